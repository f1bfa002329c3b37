//! `hexagone-tidy` holds no code: its tests (`tests/tidy.rs`) check the repository against the
//! invariants `docs/ARCHITECTURE.md` states.
