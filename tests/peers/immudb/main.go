// Command immudb-append is the peer of `cargo bench -p hexagone-auditor --bench append`: it
// appends the same entries, in the same batch sizes, to immudb's embedded store (synced
// commits, one transaction per batch), and prints the rate.
//
//	immudb-append -dir DIR -input ENTRIES -batch 10000
//
// ENTRIES holds one entry per line (the bench writes the ledger's canonical entries); each is
// stored under its 8-byte big-endian position. The last line printed is
// `immudb: N entries in S s: R entries/s`.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
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
	flag.Parse()
	if *dir == "" || *input == "" || *batch < 1 {
		fmt.Fprintln(os.Stderr, "usage: immudb-append -dir DIR -input FILE [-batch N]")
		os.Exit(2)
	}
	entries, maxLen, err := read(*input)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
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
			key := make([]byte, 8)
			binary.BigEndian.PutUint64(key, uint64(i))
			if err := tx.Set(key, nil, entries[i]); err != nil {
				fmt.Fprintln(os.Stderr, "set:", err)
				os.Exit(1)
			}
		}
		if _, err := tx.Commit(ctx); err != nil {
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
