package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
)

// Kind names what Verify found wrong.
type Kind string

// The kinds of problem Verify reports.
const (
	Edited             Kind = "edited"              // an entry's hash does not match its fields
	Unlinked           Kind = "unlinked"            // an entry's prev is not its predecessor's hash
	Missing            Kind = "missing"             // a gap in the sequence numbers
	Truncated          Kind = "truncated"           // a checkpoint names an entry beyond the end of the log
	BadSignature       Kind = "bad-signature"       // a checkpoint's signature does not verify
	CheckpointMismatch Kind = "checkpoint-mismatch" // a checkpoint's hash differs from its entry's
	CheckpointMissing  Kind = "checkpoint-missing"  // no checkpoint where the interval says one was written
)

// Problem is one thing Verify found wrong. Seq is the entry (or
// checkpoint) concerned; Last is the end of the range for Missing and
// equals Seq otherwise.
type Problem struct {
	Kind Kind
	Seq  int64
	Last int64
	Msg  string // e.g. "entry 17: content edited (hash does not match its fields)"

	what string // Msg without its "entry N: " prefix, to merge runs in Report.String
}

func (p Problem) String() string { return p.Msg }

func entryProblem(k Kind, seq int64, what string) Problem {
	return Problem{Kind: k, Seq: seq, Last: seq, Msg: fmt.Sprintf("entry %d: %s", seq, what), what: what}
}

// Report is the outcome of Verify.
type Report struct {
	Entries        int64 // entries examined
	LastSeq        int64 // seq of the newest entry (0 if the log is empty)
	Checkpoints    int   // checkpoints examined
	LastCheckpoint int64 // seq of the newest checkpoint with a good signature (0 if none)
	Problems       []Problem
	// Unanchored states the limit of what was proved: entries after the
	// last checkpoint could have been deleted without trace. Empty when
	// the newest entry is itself checkpointed.
	Unanchored string
}

// OK reports whether Verify found no problem.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// String is the report for humans, one problem a line; runs of the same
// problem on consecutive entries are merged into one line.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "audit log: %d entries, %d checkpoints", r.Entries, r.Checkpoints)
	if r.LastCheckpoint > 0 {
		fmt.Fprintf(&b, " (last at %d)", r.LastCheckpoint)
	}
	if r.OK() {
		b.WriteString(": OK\n")
	} else {
		fmt.Fprintf(&b, ": %d problems\n", len(r.Problems))
	}
	for i := 0; i < len(r.Problems); {
		p := r.Problems[i]
		j := i + 1
		for p.what != "" && j < len(r.Problems) && r.Problems[j].Kind == p.Kind && r.Problems[j].what == p.what && r.Problems[j].Seq == r.Problems[j-1].Seq+1 {
			j++
		}
		if j-i > 2 {
			fmt.Fprintf(&b, "  entries %d-%d: %s\n", p.Seq, r.Problems[j-1].Seq, p.what)
		} else {
			for _, q := range r.Problems[i:j] {
				fmt.Fprintf(&b, "  %s\n", q.Msg)
			}
		}
		i = j
	}
	if r.Unanchored != "" {
		fmt.Fprintf(&b, "note: %s\n", r.Unanchored)
	}
	return b.String()
}

// Verify walks the whole chain and every checkpoint, checking checkpoint
// signatures against pub, and reports every problem it finds. The error is
// for failing to read the log, not for what the log holds.
//
// What each tampering looks like:
//   - a field edited in place: Edited on that entry;
//   - an entry edited and its hash recomputed: Unlinked on its successor;
//   - the chain rewritten from an edit onwards: CheckpointMismatch on every
//     checkpoint at or after the edit (forging one needs the key);
//   - an entry inserted, or two swapped: Unlinked where the chain breaks,
//     and Edited on entries whose seq was changed (seq is hashed);
//   - entries deleted: Missing for the gap; a deleted tail reaching back
//     past a checkpoint: Truncated; deleted checkpoints: CheckpointMissing.
func (l *Log) Verify(ctx context.Context, pub ed25519.PublicKey) (Report, error) {
	var rep Report
	if len(pub) != ed25519.PublicKeySize {
		return rep, fmt.Errorf("audit verify: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	stored, err := scanCheckpoints(l.db.QueryContext(ctx, `SELECT seq, hash, time, sig FROM audit_checkpoints ORDER BY seq`))
	if err != nil {
		return rep, fmt.Errorf("audit verify: checkpoints: %w", err)
	}
	rep.Checkpoints = len(stored)
	good := map[int64]storedCheckpoint{} // checkpoints whose signature verifies
	exists := map[int64]bool{}           // every stored checkpoint, good or not
	var cpProblems []Problem
	for _, c := range stored {
		exists[c.Seq] = true
		if c.badHash || !ed25519.Verify(pub, signedBytes(c.Seq, c.Hash, c.timeText), c.Sig) {
			cpProblems = append(cpProblems, Problem{Kind: BadSignature, Seq: c.Seq, Last: c.Seq,
				Msg: fmt.Sprintf("checkpoint at %d: bad signature (forged, altered, or signed with another key)", c.Seq)})
			continue
		}
		good[c.Seq] = c
		rep.LastCheckpoint = max(rep.LastCheckpoint, c.Seq)
	}

	expected := int64(1)
	var prev [32]byte           // entry 1 follows the zero hash
	present := map[int64]bool{} // entries at multiples of the interval
	err = scanEntries(l.db.QueryContext(ctx, `SELECT seq, time, actor, tenant, action, object, source, result, detail, prev, hash FROM audit_entries ORDER BY seq`))(func(r row) error {
		rep.Entries++
		if r.Seq < 1 {
			rep.Problems = append(rep.Problems, entryProblem(Edited, r.Seq, "invalid sequence number"))
			return nil
		}
		gap := r.Seq > expected
		if gap {
			p := Problem{Kind: Missing, Seq: expected, Last: r.Seq - 1}
			if p.Seq == p.Last {
				p.Msg = fmt.Sprintf("entry %d missing (seq gap)", p.Seq)
			} else {
				p.Msg = fmt.Sprintf("entries %d-%d missing (seq gap)", p.Seq, p.Last)
			}
			rep.Problems = append(rep.Problems, p)
		}
		switch {
		case r.bad != "":
			rep.Problems = append(rep.Problems, entryProblem(Edited, r.Seq, "content edited ("+r.bad+")"))
		case r.ComputeHash() != r.Hash:
			rep.Problems = append(rep.Problems, entryProblem(Edited, r.Seq, "content edited (hash does not match its fields)"))
		}
		// After a gap the link is broken by the gap itself; one problem
		// says it.
		if !gap && r.Prev != prev {
			if r.Seq == 1 {
				rep.Problems = append(rep.Problems, entryProblem(Unlinked, 1, "does not start the chain (prev is not the zero hash) — inserted or earlier entries deleted"))
			} else {
				rep.Problems = append(rep.Problems, entryProblem(Unlinked, r.Seq,
					fmt.Sprintf("does not follow entry %d (prev hash mismatch) — inserted, reordered or a predecessor edited", r.Seq-1)))
			}
		}
		if c, ok := good[r.Seq]; ok && c.Hash != r.Hash {
			cpProblems = append(cpProblems, Problem{Kind: CheckpointMismatch, Seq: c.Seq, Last: c.Seq,
				Msg: fmt.Sprintf("checkpoint at %d: hash differs from entry %d — an entry at or before %d was changed and the chain rewritten", c.Seq, c.Seq, c.Seq)})
		}
		if r.Seq%l.every == 0 {
			present[r.Seq] = true
		}
		prev, expected = r.Hash, r.Seq+1
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("audit verify: entries: %w", err)
	}
	rep.LastSeq = expected - 1

	if rep.LastCheckpoint > rep.LastSeq {
		cpProblems = append(cpProblems, Problem{Kind: Truncated, Seq: rep.LastSeq + 1, Last: rep.LastCheckpoint,
			Msg: fmt.Sprintf("log ends at %d but checkpoint at %d says %d existed — entries %d-%d deleted", rep.LastSeq, rep.LastCheckpoint, rep.LastCheckpoint, rep.LastSeq+1, rep.LastCheckpoint)})
	}
	for k := l.every; k <= rep.LastSeq; k += l.every {
		if present[k] && !exists[k] {
			cpProblems = append(cpProblems, Problem{Kind: CheckpointMissing, Seq: k, Last: k,
				Msg: fmt.Sprintf("checkpoint at %d missing (one is written every %d entries) — deleted", k, l.every)})
		}
	}
	rep.Problems = append(rep.Problems, cpProblems...)
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Seq < rep.Problems[j].Seq })

	switch {
	case rep.LastSeq == 0:
	case rep.LastCheckpoint == 0:
		rep.Unanchored = fmt.Sprintf("no checkpoint: entries 1-%d are covered only by the chain (deleting the newest of them leaves no trace)", rep.LastSeq)
	case rep.LastCheckpoint < rep.LastSeq:
		rep.Unanchored = fmt.Sprintf("entries after the last checkpoint (seq %d) are covered only by the chain (deleting them leaves no trace)", rep.LastCheckpoint)
	}
	return rep, nil
}
