// Command immudb-append is the peer of `cargo bench -p hexagone-auditor --bench append`: it
// appends the same entries, in the same batch sizes, to immudb's embedded store (synced
// commits, one transaction per batch), and prints the rate.
//
//	immudb-append -dir DIR -input ENTRIES -batch 10000 -key object|position [-async]
//
// ENTRIES holds one entry per line (the bench writes the ledger's canonical entries). With
// `-key object` (the default) each is stored under its object's store and identifier, as a
// user of immudb keys objects; with `-key position` under its 8-byte big-endian position, a key
// that only ever increases and puts every key of a batch into one leaf of immudb's B-tree.
// Keys are made before the clock starts. `Commit` returns once the transaction is synced and
// indexed; with `-async`, `AsyncCommit` returns once it is synced, indexing going on behind
// (immudb v1.11.1 embedded/store/ongoing_tx.go: `Commit` and `AsyncCommit` call `commit` with
// `waitForIndexing` true and false). The last line printed is
// `immudb: N entries in S s: R entries/s`.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/codenotary/immudb/embedded/store"
)

func main() {
	dir := flag.String("dir", "", "store directory (created; must not exist)")
	input := flag.String("input", "", "entries, one per line")
	batch := flag.Int("batch", 10000, "entries per transaction")
	keyBy := flag.String("key", "object", "object (store and identifier) or position")
	async := flag.Bool("async", false, "commit without waiting for indexing")
	flag.Parse()
	if *dir == "" || *input == "" || *batch < 1 || (*keyBy != "object" && *keyBy != "position") {
		fmt.Fprintln(os.Stderr, "usage: immudb-append -dir DIR -input FILE [-batch N] [-key object|position] [-async]")
		os.Exit(2)
	}
	entries, maxLen, err := read(*input)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	keys := make([][]byte, len(entries))
	for i, e := range entries {
		if *keyBy == "position" {
			keys[i] = binary.BigEndian.AppendUint64(nil, uint64(i))
			continue
		}
		var id struct {
			Store  string `json:"store"`
			Object string `json:"object"`
		}
		if err := json.Unmarshal(e, &id); err != nil || id.Object == "" {
			fmt.Fprintf(os.Stderr, "entry %d names no object (%v)\n", i, err)
			os.Exit(2)
		}
		keys[i] = []byte(id.Store + "\x00" + id.Object)
	}
	opts := store.DefaultOptions().
		WithSynced(true).
		WithMaxTxEntries(*batch).
		WithMaxValueLen(maxLen).
		WithMaxConcurrency(1)
	st, err := store.Open(*dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "opening the store:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	start := time.Now()
	for from := 0; from < len(entries); from += *batch {
		to := min(from+*batch, len(entries))
		tx, err := st.NewWriteOnlyTx(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "transaction:", err)
			os.Exit(1)
		}
		for i := from; i < to; i++ {
			if err := tx.Set(keys[i], nil, entries[i]); err != nil {
				fmt.Fprintln(os.Stderr, "set:", err)
				os.Exit(1)
			}
		}
		commit := tx.Commit
		if *async {
			commit = tx.AsyncCommit
		}
		if _, err := commit(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "commit:", err)
			os.Exit(1)
		}
	}
	elapsed := time.Since(start).Seconds()
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing:", err)
		os.Exit(1)
	}
	fmt.Printf("immudb: %d entries in %.2f s: %.0f entries/s\n", len(entries), elapsed, float64(len(entries))/elapsed)
}

func read(path string) ([][]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var entries [][]byte
	maxLen := 1
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<24)
	for s.Scan() {
		e := append([]byte(nil), s.Bytes()...)
		maxLen = max(maxLen, len(e))
		entries = append(entries, e)
	}
	return entries, maxLen, s.Err()
}
