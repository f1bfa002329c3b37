// Command interop checks Hexagone ledger artefacts with independent Go implementations:
// golang.org/x/mod/sumdb/note for signed checkpoints (C2SP signed notes, Ed25519),
// github.com/transparency-dev/merkle for RFC 6962 inclusion and consistency proofs, and
// github.com/transparency-dev/formats/note for witness cosignatures (C2SP tlog-cosignature,
// Ed25519 cosignature/v1).
//
// Usage: interop -vkey FILE -old NOTE -new NOTE -proof TLOGPROOF -consistency FILE
//
//	interop -check-cosig -vkey FILE -wkey FILE -in NOTE
//	interop -cosign -vkey FILE -in NOTE -out NOTE -out-vkeys FILE
//
// It prints one "ok" line per check and exits 1 at the first failure.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type checkpoint struct {
	origin string
	size   uint64
	root   []byte
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "interop: "+format+"\n", args...)
	os.Exit(1)
}

func read(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	return b
}

// open verifies a signed note with the trusted key and parses the tlog-checkpoint body.
func open(msg []byte, verifiers note.Verifiers, origin string) checkpoint {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		fail("note.Open: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body has %d lines", len(lines))
	}
	if lines[0] != origin {
		fail("origin %q, key name %q", lines[0], origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		fail("size: %v", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		fail("root %q: %v", lines[2], err)
	}
	return checkpoint{origin: lines[0], size: size, root: root}
}

// sign is the other direction: Go signs a checkpoint body with our private key (in the
// signed-note signer format) plus extra Ed25519 signers of its own, and writes the note and
// the extra verifier keys for Rust to check.
func sign(skeyPath, textPath, outPath, vkeysPath string, extra int) {
	skey := strings.TrimSpace(string(read(skeyPath)))
	signer, err := note.NewSigner(skey)
	if err != nil {
		fail("note.NewSigner: %v", err)
	}
	signers := []note.Signer{signer}
	var vkeys []string
	for i := 0; i < extra; i++ {
		sk, vk, err := note.GenerateKey(rand.Reader, fmt.Sprintf("witness-%d.example", i))
		if err != nil {
			fail("note.GenerateKey: %v", err)
		}
		s, err := note.NewSigner(sk)
		if err != nil {
			fail("note.NewSigner: %v", err)
		}
		signers = append(signers, s)
		vkeys = append(vkeys, vk)
	}
	msg, err := note.Sign(&note.Note{Text: string(read(textPath))}, signers...)
	if err != nil {
		fail("note.Sign: %v", err)
	}
	if err := os.WriteFile(outPath, msg, 0o644); err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(vkeysPath, []byte(strings.Join(vkeys, "\n")+"\n"), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("ok signed with %d keys\n", len(signers))
}

// logVerifier reads the log's verifier key.
func logVerifier(vkeyPath string) note.Verifier {
	v, err := note.NewVerifier(strings.TrimSpace(string(read(vkeyPath))))
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	return v
}

// checkCosig opens a checkpoint with the log's key and requires a valid cosignature/v1 by the
// witness key in wkeyPath (as Hexagone writes it: name+id+base64(0x04||key)).
func checkCosig(vkeyPath, wkeyPath, inPath string) {
	log := logVerifier(vkeyPath)
	w, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(string(read(wkeyPath))))
	if err != nil {
		fail("NewVerifierForCosignatureV1: %v", err)
	}
	n, err := note.Open(read(inPath), note.VerifierList(log, w))
	if err != nil {
		fail("note.Open: %v", err)
	}
	for _, sig := range n.Sigs {
		if sig.Name == w.Name() && sig.Hash == w.KeyHash() {
			t, err := fnote.CoSigV1Timestamp(sig)
			if err != nil {
				fail("cosignature time: %v", err)
			}
			fmt.Printf("ok cosignature by %s at %d\n", w.Name(), t.Unix())
			return
		}
	}
	fail("no valid cosignature by %s", w.Name())
}

// cosign is the other direction: a witness key made by Go cosigns (cosignature/v1) a
// checkpoint signed by the log; writes the note and the witness's verifier key.
func cosign(vkeyPath, inPath, outPath, vkeysPath string) {
	n, err := note.Open(read(inPath), note.VerifierList(logVerifier(vkeyPath)))
	if err != nil {
		fail("note.Open: %v", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "witness.go.example")
	if err != nil {
		fail("note.GenerateKey: %v", err)
	}
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		fail("NewSignerForCosignatureV1: %v", err)
	}
	wkey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		fail("VKeyToCosignatureV1: %v", err)
	}
	msg, err := note.Sign(n, signer)
	if err != nil {
		fail("note.Sign: %v", err)
	}
	if err := os.WriteFile(outPath, msg, 0o644); err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(vkeysPath, []byte(wkey+"\n"), 0o644); err != nil {
		fail("%v", err)
	}
	fmt.Printf("ok cosigned by %s\n", signer.Name())
}

func main() {
	signMode := flag.Bool("sign", false, "sign -text with -skey and -extra new keys, write -out and -out-vkeys")
	checkCosigMode := flag.Bool("check-cosig", false, "open -in with -vkey and require a cosignature by -wkey")
	cosignMode := flag.Bool("cosign", false, "cosign -in (opened with -vkey) with a new witness key, write -out and -out-vkeys")
	wkeyPath := flag.String("wkey", "", "witness verifier key file (with -check-cosig)")
	inPath := flag.String("in", "", "signed note to read (with -check-cosig, -cosign)")
	skeyPath := flag.String("skey", "", "signer key file (with -sign)")
	textPath := flag.String("text", "", "note text to sign (with -sign)")
	outPath := flag.String("out", "", "signed note to write (with -sign)")
	vkeysPath := flag.String("out-vkeys", "", "verifier keys of the extra signers (with -sign)")
	extraSigners := flag.Int("extra", 0, "extra signers (with -sign)")
	vkeyPath := flag.String("vkey", "", "verifier key file")
	oldPath := flag.String("old", "", "older signed checkpoint")
	newPath := flag.String("new", "", "newer signed checkpoint")
	proofPath := flag.String("proof", "", "c2sp.org/tlog-proof@v1 file")
	consPath := flag.String("consistency", "", "consistency proof: one base64 hash per line")
	flag.Parse()
	if *signMode {
		sign(*skeyPath, *textPath, *outPath, *vkeysPath, *extraSigners)
		return
	}
	if *checkCosigMode {
		checkCosig(*vkeyPath, *wkeyPath, *inPath)
		return
	}
	if *cosignMode {
		cosign(*vkeyPath, *inPath, *outPath, *vkeysPath)
		return
	}

	vkey := strings.TrimSpace(string(read(*vkeyPath)))
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	verifiers := note.VerifierList(verifier)
	fmt.Printf("ok verifier key %s (key ID %08x)\n", verifier.Name(), verifier.KeyHash())

	older := open(read(*oldPath), verifiers, verifier.Name())
	newer := open(read(*newPath), verifiers, verifier.Name())
	fmt.Printf("ok signatures on checkpoints of size %d and %d\n", older.size, newer.size)

	// c2sp.org/tlog-proof@v1: header, optional extra, index, hashes, blank line, checkpoint.
	parts := bytes.SplitN(read(*proofPath), []byte("\n\n"), 2)
	if len(parts) != 2 {
		fail("proof file has no blank line")
	}
	head := strings.Split(string(parts[0]), "\n")
	if head[0] != "c2sp.org/tlog-proof@v1" {
		fail("proof header %q", head[0])
	}
	head = head[1:]
	var extra []byte
	if strings.HasPrefix(head[0], "extra ") {
		if extra, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(head[0], "extra ")); err != nil {
			fail("extra: %v", err)
		}
		head = head[1:]
	}
	index, err := strconv.ParseUint(strings.TrimPrefix(head[0], "index "), 10, 64)
	if err != nil {
		fail("index: %v", err)
	}
	var path [][]byte
	for _, l := range head[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			fail("proof hash: %v", err)
		}
		path = append(path, h)
	}
	inProof := open(parts[1], verifiers, verifier.Name())
	leaf := rfc6962.DefaultHasher.HashLeaf(extra)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, inProof.size, leaf, path, inProof.root); err != nil {
		fail("inclusion of entry %d in tree of size %d: %v", index, inProof.size, err)
	}
	fmt.Printf("ok inclusion of entry %d in tree of size %d\n", index, inProof.size)

	var cpath [][]byte
	for _, l := range strings.Fields(string(read(*consPath))) {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			fail("consistency hash: %v", err)
		}
		cpath = append(cpath, h)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.size, newer.size, cpath, older.root, newer.root); err != nil {
		fail("consistency %d -> %d: %v", older.size, newer.size, err)
	}
	fmt.Printf("ok consistency from size %d to %d\n", older.size, newer.size)
}
