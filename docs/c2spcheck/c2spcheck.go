// Command c2spcheck verifies a Hexagone export bundle (hexagone.ledger/bundle@v1) with Go's
// standard library only: C2SP signed notes with Ed25519, RFC 6962 Merkle trees with SHA-256.
//
//	go build -o c2spcheck c2spcheck.go
//	./c2spcheck -vkey ledger.key.pub -bundle ledger.bundle.jsonl [-witness w1.key.pub]... [-checkpoint head.note] [-proof x.tlog-proof]
//
// It checks the header, every entry's sequence number and hash chain (prev), every
// checkpoint's Ed25519 signature by the key in force (following key rotations), its origin,
// its size (the entries before it) and its root (recomputed from the entries' leaf hashes),
// that the trusted key (-vkey) signed the last checkpoint, that every entry is under a signed
// checkpoint, and that the bundle ends with its end record and nothing after it. With
// -witness (repeatable), the last checkpoint must carry each witness's cosignature (C2SP
// tlog-cosignature, cosignature/v1). With -checkpoint, the bundle must reach that checkpoint
// (obtained elsewhere, signed by the -vkey key) with the same root. With -proof, an inclusion
// proof's entry must be in its signed tree.
//
// Exit 0 valid, 1 invalid ("FAIL: " and what is wrong), 2 usage or I/O error.
package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

type hash = [32]byte

func fail(f string, a ...any)  { fmt.Fprintf(os.Stderr, "FAIL: "+f+"\n", a...); os.Exit(1) }
func usage(f string, a ...any) { fmt.Fprintf(os.Stderr, "c2spcheck: "+f+"\n", a...); os.Exit(2) }

// key is a C2SP signed-note verifier key: name+<8 hex key ID>+base64(alg || Ed25519 key),
// alg 0x01 for the log's key, 0x04 for a witness's cosignature/v1 key.
type key struct {
	name string
	id   [4]byte
	pub  ed25519.PublicKey
	text string
}

func parseKey(s string, alg byte) (key, error) {
	parts := strings.SplitN(s, "+", 3)
	if len(parts) != 3 {
		return key{}, fmt.Errorf("%q is not name+keyid+key", s)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != alg {
		return key{}, fmt.Errorf("%q is not an Ed25519 key of type %#x", s, alg)
	}
	k := key{name: parts[0], pub: ed25519.PublicKey(raw[1:]), text: s}
	sum := sha256.Sum256(append([]byte(k.name+"\n"), raw...))
	copy(k.id[:], sum[:4])
	if parts[1] != hex.EncodeToString(k.id[:]) {
		return key{}, fmt.Errorf("key ID %s, computed %x", parts[1], k.id)
	}
	return k, nil
}

// signatures splits a signed note into its text and the signatures of key k (name and key ID
// match): text, a blank line, then "— name base64(key ID || signature)" lines.
func signatures(note string, k key) (string, [][]byte, error) {
	split := strings.LastIndex(note, "\n\n")
	if split < 0 || split+2 >= len(note) || !strings.HasSuffix(note, "\n") {
		return "", nil, fmt.Errorf("not a signed note")
	}
	var sigs [][]byte
	for _, l := range strings.Split(note[split+2:len(note)-1], "\n") {
		name, b64, ok := strings.Cut(strings.TrimPrefix(l, "— "), " ")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || len(raw) < 5 || !strings.HasPrefix(l, "— ") {
			return "", nil, fmt.Errorf("malformed signature line %q", l)
		}
		if name == k.name && bytes.Equal(raw[:4], k.id[:]) {
			sigs = append(sigs, raw[4:])
		}
	}
	return note[:split+1], sigs, nil
}

// cosigned returns the time of witness w's valid cosignature/v1 on the note: 8 bytes of time,
// then an Ed25519 signature of "cosignature/v1\ntime <time>\n" and the checkpoint body.
func cosigned(note string, w key) (uint64, bool) {
	text, sigs, err := signatures(note, w)
	for _, sig := range sigs {
		if err != nil || len(sig) != 72 {
			continue
		}
		t := binary.BigEndian.Uint64(sig[:8])
		if ed25519.Verify(w.pub, []byte(fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, text)), sig[8:]) {
			return t, true
		}
	}
	return 0, false
}

// open checks that k signed the note (other keys' lines, such as witness cosignatures, are
// ignored) and parses its c2sp.org/tlog-checkpoint body: origin, tree size, base64 root.
func open(note string, k key) (uint64, hash, error) {
	var root hash
	text, sigs, err := signatures(note, k)
	if err != nil {
		return 0, root, err
	}
	for _, sig := range sigs {
		if !ed25519.Verify(k.pub, []byte(text), sig) {
			return 0, root, fmt.Errorf("the signature by %s does not verify", k.name)
		}
	}
	if len(sigs) == 0 {
		return 0, root, fmt.Errorf("not signed by %s", k.text)
	}
	body := strings.Split(text, "\n")
	if len(body) < 4 || body[0] != k.name {
		return 0, root, fmt.Errorf("the body does not start with the origin %q", k.name)
	}
	size, err := strconv.ParseUint(body[1], 10, 64)
	if err != nil {
		return 0, root, fmt.Errorf("tree size %q", body[1])
	}
	raw, err := base64.StdEncoding.DecodeString(body[2])
	if err != nil || len(raw) != 32 {
		return 0, root, fmt.Errorf("root hash %q", body[2])
	}
	copy(root[:], raw)
	return size, root, nil
}

func node(l, r hash) hash { return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...)) }
func leaf(e []byte) hash  { return sha256.Sum256(append([]byte{0}, e...)) }

// tree is the RFC 6962 tree's right edge: the roots of its perfect subtrees, largest first.
type tree struct {
	size  uint64
	peaks []hash
}

func (t *tree) push(h hash) {
	t.peaks = append(t.peaks, h)
	for s := t.size; s&1 == 1; s >>= 1 {
		n := len(t.peaks)
		t.peaks = append(t.peaks[:n-2], node(t.peaks[n-2], t.peaks[n-1]))
	}
	t.size++
}

func (t *tree) root() hash {
	if t.size == 0 {
		return sha256.Sum256(nil)
	}
	r := t.peaks[len(t.peaks)-1]
	for i := len(t.peaks) - 2; i >= 0; i-- {
		r = node(t.peaks[i], r)
	}
	return r
}

// both prints a root in hex (as hexagone-auditor does) and in base64 (as checkpoints do).
func both(h hash) string {
	return hex.EncodeToString(h[:]) + " (base64 " + base64.StdEncoding.EncodeToString(h[:]) + ")"
}

func main() {
	vkeyPath := flag.String("vkey", "", "the log's verifier key, the one in force (keygen's .pub file)")
	bundlePath := flag.String("bundle", "", "export bundle (JSON Lines)")
	cpPath := flag.String("checkpoint", "", "optional: a checkpoint signed by the -vkey key, obtained elsewhere, that the bundle must reach")
	proofPath := flag.String("proof", "", "optional: a c2sp.org/tlog-proof@v1 file to check")
	var witnesses []key
	flag.Func("witness", "a witness's key file (witness keygen's .pub) whose cosignature the last checkpoint must carry; repeatable", func(path string) error {
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		w, err := parseKey(strings.TrimSpace(string(raw)), 0x04)
		witnesses = append(witnesses, w)
		return err
	})
	flag.Parse()
	if *vkeyPath == "" || *bundlePath == "" {
		usage("-vkey and -bundle are required")
	}
	raw, err := os.ReadFile(*vkeyPath)
	if err != nil {
		usage("%v", err)
	}
	trusted, err := parseKey(strings.TrimSpace(string(raw)), 0x01)
	if err != nil {
		usage("-vkey: %v", err)
	}
	var want struct {
		size uint64
		root hash
		seen bool
	}
	if *cpPath != "" {
		raw, err := os.ReadFile(*cpPath)
		if err != nil {
			usage("%v", err)
		}
		note := strings.TrimSuffix(string(raw), "\n") + "\n" // with or without a last newline
		if want.size, want.root, err = open(note, trusted); err != nil {
			usage("-checkpoint: %v", err)
		}
	}

	f, err := os.Open(*bundlePath)
	if err != nil {
		usage("%v", err)
	}
	in := bufio.NewReader(f)
	var (
		keys        []key // the keys in force, in order: the first listed, then each rotation's
		active      int   // index in keys of the key that signs the next checkpoint
		rotation    = -1  // seq of a key rotation not yet committed by a checkpoint
		t           tree
		prev        hash // leaf hash of the last entry; zeros before entry 0
		origin      string
		checkpoints uint64
		lastSize    uint64
		lastSigner  = -1
		lastNote    string
		ended       bool
	)
	for line := 1; ; line++ {
		l, err := in.ReadBytes('\n')
		if len(l) == 0 && err != nil {
			break
		}
		if !bytes.HasSuffix(l, []byte("\n")) {
			fail("line %d: incomplete last line: the bundle is truncated", line)
		}
		l = l[:len(l)-1]
		if ended {
			fail("line %d: a record after the end record", line)
		}
		if line > 1 && bytes.HasPrefix(l, []byte(`{"entry":`)) && bytes.HasSuffix(l, []byte("}")) {
			entry := l[len(`{"entry":`) : len(l)-1] // the canonical entry bytes: the leaf
			var e struct {
				Seq    *uint64
				Prev   string
				Kind   string
				NewKey string `json:"new_key"`
			}
			if err := json.Unmarshal(entry, &e); err != nil || e.Seq == nil {
				fail("line %d: not an entry: %v", line, err)
			}
			if *e.Seq != t.size {
				fail("line %d: entry %d where entry %d was expected", line, *e.Seq, t.size)
			}
			if rotation >= 0 {
				fail("line %d: the key rotation in entry %d is not committed by a checkpoint", line, rotation)
			}
			if e.Prev != hex.EncodeToString(prev[:]) {
				fail("line %d: entry %d records prev %s, but the entry before it hashes to %x", line, *e.Seq, e.Prev, prev)
			}
			if e.Kind == "key-rotation" {
				k, err := parseKey(e.NewKey, 0x01)
				if err != nil || k.name != origin {
					fail("line %d: entry %d announces an unusable key %q", line, *e.Seq, e.NewKey)
				}
				keys, rotation = append(keys, k), int(*e.Seq)
			}
			prev = leaf(entry)
			t.push(prev)
			if *cpPath != "" && t.size == want.size {
				want.seen = t.root() == want.root
				if !want.seen {
					fail("line %d: the entries up to %d give root %s, the checkpoint given signs %s: a fork", line, *e.Seq, both(t.root()), both(want.root))
				}
			}
			continue
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(l, &rec); err != nil || len(rec) != 1 {
			fail("line %d: not a bundle record", line)
		}
		switch {
		case line == 1:
			var h struct{ Format, Origin string }
			if json.Unmarshal(rec["bundle"], &h) != nil || h.Format != "hexagone.ledger/bundle@v1" {
				fail("line 1: not a hexagone.ledger/bundle@v1 header")
			}
			origin = h.Origin
		case rec["key"] != nil:
			var s string
			if json.Unmarshal(rec["key"], &s) != nil || t.size > 0 || checkpoints > 0 {
				fail("line %d: a key record out of place", line)
			}
			k, err := parseKey(s, 0x01)
			if err != nil || k.name != origin {
				fail("line %d: key %q is not a key of the log %q", line, s, origin)
			}
			if keys == nil {
				keys = []key{k} // the initial key; later ones must be announced by entries
			}
		case rec["checkpoint"] != nil:
			var note string
			if json.Unmarshal(rec["checkpoint"], &note) != nil || keys == nil {
				fail("line %d: a checkpoint record out of place", line)
			}
			size, root, err := open(note, keys[active])
			if err != nil {
				fail("line %d: checkpoint: %v", line, err)
			}
			if checkpoints > 0 && size <= lastSize {
				fail("line %d: checkpoint of size %d after one of size %d", line, size, lastSize)
			}
			if size != t.size {
				fail("line %d: checkpoint of size %d after %d entries", line, size, t.size)
			}
			if rotation >= 0 && size != uint64(rotation)+1 {
				fail("line %d: the key rotation in entry %d is not committed by this checkpoint", line, rotation)
			}
			if root != t.root() {
				fail("line %d: checkpoint of size %d signs root %s, the entries give %s", line, size, both(root), both(t.root()))
			}
			lastSize, lastSigner, lastNote = size, active, note
			checkpoints++
			if rotation >= 0 {
				active, rotation = active+1, -1
			}
		case rec["end"] != nil:
			var end struct{ Entries, Checkpoints uint64 }
			if json.Unmarshal(rec["end"], &end) != nil || end.Entries != t.size || end.Checkpoints != checkpoints {
				fail("line %d: the end record %s does not match the %d entries and %d checkpoints read", line, rec["end"], t.size, checkpoints)
			}
			ended = true
		default:
			fail("line %d: not a bundle record", line)
		}
	}
	switch {
	case origin == "":
		fail("the bundle is empty")
	case !ended:
		fail("the bundle is truncated: no end record after %d entries", t.size)
	case lastSize < t.size:
		fail("entries %d..%d are not covered by any signed checkpoint", lastSize, t.size-1)
	case lastSigner < 0 || keys[lastSigner].name != trusted.name || !keys[lastSigner].pub.Equal(trusted.pub):
		fail("the last checkpoint is not signed by the trusted key %s", trusted.text)
	case *cpPath != "" && !want.seen:
		fail("the bundle stops at %d entries and does not reach the checkpoint given (size %d): it was cut short", t.size, want.size)
	}
	times := map[string]uint64{}
	for _, w := range witnesses {
		t, ok := cosigned(lastNote, w)
		if !ok {
			fail("the last checkpoint (size %d) carries no valid cosignature by the witness %s", lastSize, w.text)
		}
		times[w.text] = t
	}
	fmt.Printf("ok: %d entries, %d checkpoints, origin %s, root %s\n", t.size, checkpoints, origin, both(t.root()))
	fmt.Printf("ok: every entry chained and under the last checkpoint, signed by %s; the end record matches\n", trusted.text)
	for _, w := range witnesses {
		fmt.Printf("ok: the last checkpoint is cosigned by %s (time %d)\n", w.name, times[w.text])
	}
	if *cpPath != "" {
		fmt.Printf("ok: the bundle reaches the checkpoint given (size %d) with the same root\n", want.size)
	}
	if *proofPath != "" {
		checkProof(*proofPath, trusted)
	}
}

// checkProof checks a c2sp.org/tlog-proof@v1 file: header, "extra <base64 entry>",
// "index N", the audit path (one base64 hash per line), a blank line, the signed checkpoint.
func checkProof(path string, k key) {
	raw, err := os.ReadFile(path)
	if err != nil {
		usage("%v", err)
	}
	head, note, ok := strings.Cut(string(raw), "\n\n")
	lines := strings.Split(head, "\n")
	if !ok || len(lines) < 3 || lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "extra ") {
		fail("%s: not a c2sp.org/tlog-proof@v1 file with an extra line", path)
	}
	entry, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[1], "extra "))
	if err != nil {
		fail("%s: extra: %v", path, err)
	}
	index, err := strconv.ParseUint(strings.TrimPrefix(lines[2], "index "), 10, 64)
	if err != nil {
		fail("%s: index: %v", path, err)
	}
	var e struct{ Seq *uint64 }
	if json.Unmarshal(entry, &e) != nil || e.Seq == nil || *e.Seq != index {
		fail("%s: the entry carried is not entry %d", path, index)
	}
	size, root, err := open(note, k)
	if err != nil {
		fail("%s: checkpoint: %v", path, err)
	}
	// RFC 9162, 2.1.3.2: the audit path from the leaf up to the root.
	r, fn, sn := leaf(entry), index, size-1
	if index >= size {
		fail("%s: index %d is outside the tree of size %d", path, index, size)
	}
	for _, l := range lines[3:] {
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(b) != 32 || sn == 0 {
			fail("%s: audit path line %q", path, l)
		}
		var p hash
		copy(p[:], b)
		if fn&1 == 1 || fn == sn {
			r = node(p, r)
			for fn&1 == 0 && fn != 0 {
				fn, sn = fn>>1, sn>>1
			}
		} else {
			r = node(r, p)
		}
		fn, sn = fn>>1, sn>>1
	}
	if sn != 0 || r != root {
		fail("%s: entry %d is not in the signed tree of size %d", path, index, size)
	}
	fmt.Printf("ok: entry %d is in the signed tree of size %d: %.100s…\n", index, size, entry)
}
