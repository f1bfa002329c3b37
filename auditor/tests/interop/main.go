// Command interop verifies Hexagone ledger artefacts with independent Go
// implementations: golang.org/x/mod/sumdb/note for the signed checkpoints and
// github.com/transparency-dev/merkle for RFC 6962 inclusion and consistency proofs.
package main

import (
	_ "github.com/transparency-dev/merkle/proof"
	_ "golang.org/x/mod/sumdb/note"
)

func main() {}
