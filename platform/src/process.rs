//! What the two binaries do alike as processes.

/// `… | head`: once the reader of standard output has gone, the program stops quietly with the
/// status a shell gives a program ended by SIGPIPE (141), as other command-line tools do,
/// instead of reporting a panic (Rust ignores SIGPIPE, so `println!` panics with "Broken
/// pipe"). Nothing is lost: both binaries print their output after the work it reports is
/// done. Call it first in `main`.
pub fn quiet_when_stdout_is_closed() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
