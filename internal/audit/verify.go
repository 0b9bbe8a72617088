package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Kind names what Verify found wrong.
type Kind string

// The kinds of problem Verify reports.
const (
	Edited             Kind = "edited"              // an entry's hash does not match its fields
	Unlinked           Kind = "unlinked"            // an entry's prev is not its predecessor's hash
	Missing            Kind = "missing"             // a gap in the sequence numbers
	Truncated          Kind = "truncated"           // a checkpoint, stored or published, names an entry beyond the end of the log
	BadSignature       Kind = "bad-signature"       // a checkpoint's signature does not verify
	CheckpointMismatch Kind = "checkpoint-mismatch" // a checkpoint's hash differs from its entry's
	CheckpointMissing  Kind = "checkpoint-missing"  // no stored checkpoint where the interval or the published copy says one was written
	Uncovered          Kind = "uncovered"           // entries older than the checkpoint interval that no checkpoint covers
	Empty              Kind = "empty"               // an empty log, and no published copy to show it was never longer
)

// clockSlack is how much later than the checkpoint interval Verify still
// accepts an unsigned entry: time for the checkpoint to be written, and
// for the clocks of the writer and the verifier to differ.
const clockSlack = time.Minute

// Problem is one thing Verify found wrong. Seq is the entry (or
// checkpoint) concerned; Last is the end of the range for Missing,
// Truncated and Uncovered and equals Seq otherwise. Line is the line of
// the published checkpoints file the problem was found on, 0 for one
// found in the database.
type Problem struct {
	Kind Kind
	Seq  int64
	Last int64
	Line int    `json:",omitempty"`
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
	Checkpoints    int   // stored checkpoints examined
	LastCheckpoint int64 // seq of the newest stored checkpoint with a good signature (0 if none)
	// Published is how many published checkpoints were examined, and
	// LastPublished the newest with a good signature; both 0 when the log
	// was not compared with a published copy.
	Published     int
	LastPublished int64
	// Covered is the newest entry that a checkpoint with a good signature
	// and a matching hash, stored or published, vouches for.
	Covered  int64
	Problems []Problem
	// Limits says what the report could not prove, even when OK: entries
	// no checkpoint covers yet, and that the log was not compared with a
	// published copy.
	Limits []string
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
	if r.Published > 0 {
		fmt.Fprintf(&b, ", %d published", r.Published)
		if r.LastPublished > 0 {
			fmt.Fprintf(&b, " (last at %d)", r.LastPublished)
		}
	}
	if r.OK() {
		b.WriteString(": OK\n")
	} else if len(r.Problems) == 1 {
		b.WriteString(": 1 problem\n")
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
	for _, l := range r.Limits {
		fmt.Fprintf(&b, "note: %s\n", l)
	}
	return b.String()
}

// VerifyOption adds to what Verify checks.
type VerifyOption func(*verifyConfig)

type verifyConfig struct {
	published []Published
	against   bool // compare with a published copy, even an empty one
}

// AgainstPublished compares the log with a copy of its published
// checkpoints (ReadPublished), kept where the log's writer cannot change
// it: every one must be signed by the key and match the log's hash at its
// seq, the log may not end before the newest, and each must still be in
// the database. An empty copy is a claim too: that the log was never
// signed, so an empty log verifies only against one.
func AgainstPublished(ps []Published) VerifyOption {
	return func(c *verifyConfig) { c.published, c.against = ps, true }
}

// Verify walks the whole chain and every checkpoint, checking checkpoint
// signatures against pub, and reports every problem it finds. The error is
// for failing to read the log, not for what the log holds.
//
// What each tampering looks like:
//   - a field edited in place: Edited on that entry;
//   - an entry edited and its hash recomputed: Unlinked on its successor;
//   - the chain rewritten from an edit onwards: CheckpointMismatch on every
//     checkpoint, stored or published, at or after the edit (forging one
//     needs the key); with the stored ones deleted too, Uncovered once the
//     entries are older than the checkpoint interval;
//   - an entry inserted, or two swapped: Unlinked where the chain breaks,
//     and Edited on entries whose seq was changed (seq is hashed);
//   - entries deleted: Missing for the gap; a deleted tail reaching back
//     past a checkpoint: Truncated; deleted checkpoints: CheckpointMissing
//     (at multiples of CheckpointEvery, and every published one), and
//     Uncovered for the entries they covered once those are older than
//     the interval;
//   - the log emptied: Truncated against the published copy, Empty
//     without one.
//
// The checkpoint interval (CheckpointInterval) and the Clock must be the
// writer's for Uncovered to be right.
func (l *Log) Verify(ctx context.Context, pub ed25519.PublicKey, opts ...VerifyOption) (Report, error) {
	var rep Report
	var cfg verifyConfig
	for _, o := range opts {
		o(&cfg)
	}
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
	goodPub, pubProblems := checkPublished(cfg.published, pub)
	cpProblems = append(cpProblems, pubProblems...)
	rep.Published = len(cfg.published)
	wanted := map[int64]bool{}     // seqs of published checkpoints
	hashAt := map[int64][32]byte{} // the hashes of the entries at them
	for _, p := range goodPub {
		wanted[p.Seq] = true
		rep.LastPublished = max(rep.LastPublished, p.Seq)
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
		if c, ok := good[r.Seq]; ok {
			if c.Hash != r.Hash {
				cpProblems = append(cpProblems, mismatch(c.Seq, 0, fmt.Sprintf("checkpoint at %d", c.Seq)))
			} else {
				rep.Covered = max(rep.Covered, r.Seq)
			}
		}
		if wanted[r.Seq] {
			hashAt[r.Seq] = r.Hash
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
	cpProblems = append(cpProblems, rep.matchPublished(goodPub, hashAt, exists)...)
	uncovered, err := l.uncovered(ctx, &rep, cfg.against)
	if err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	cpProblems = append(cpProblems, uncovered...)
	rep.Problems = append(rep.Problems, cpProblems...)
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Seq < rep.Problems[j].Seq })
	if !cfg.against {
		rep.Limits = append(rep.Limits, "not compared with published checkpoints: a log cut back to one of its checkpoints, "+
			"the newer ones deleted, looks intact; verify against a copy of the published checkpoints kept off this host")
	}
	return rep, nil
}

// checkPublished returns the published checkpoints signed by pub and a
// problem for each of the others.
func checkPublished(ps []Published, pub ed25519.PublicKey) (good []Published, problems []Problem) {
	for _, p := range ps {
		var why string
		switch {
		case !pub.Equal(p.Key):
			why = fmt.Sprintf("is for another key (%x…): a copy of another log's checkpoints?", p.Key[:min(8, len(p.Key))])
		case !ed25519.Verify(pub, signedBytes(p.Seq, p.Hash, p.Time.UTC().Format(timeFormat)), p.Sig):
			why = "bad signature (forged or altered)"
		default:
			good = append(good, p)
			continue
		}
		problems = append(problems, Problem{Kind: BadSignature, Seq: p.Seq, Last: p.Seq, Line: p.Line,
			Msg: fmt.Sprintf("published checkpoint at %d (line %d): %s", p.Seq, p.Line, why)})
	}
	return good, problems
}

// matchPublished holds the log to its published checkpoints: the log may
// not end before the newest, each must match its entry, and each must
// still be stored.
func (rep *Report) matchPublished(good []Published, hashAt map[int64][32]byte, stored map[int64]bool) []Problem {
	var out []Problem
	var newest Published
	for _, p := range good {
		where := fmt.Sprintf("published checkpoint at %d (line %d, signed %s)", p.Seq, p.Line, p.Time.UTC().Format(time.RFC3339))
		switch h, ok := hashAt[p.Seq]; {
		case p.Seq > rep.LastSeq:
			if p.Seq > newest.Seq {
				newest = p
			}
		case !ok:
			// The entry is missing: the gap is reported as Missing.
		case h != p.Hash:
			out = append(out, mismatch(p.Seq, p.Line, where))
		default:
			rep.Covered = max(rep.Covered, p.Seq)
			if !stored[p.Seq] {
				out = append(out, Problem{Kind: CheckpointMissing, Seq: p.Seq, Last: p.Seq, Line: p.Line,
					Msg: fmt.Sprintf("checkpoint at %d missing from the database (%s) — deleted", p.Seq, where)})
			}
		}
	}
	if newest.Seq > 0 {
		out = append(out, Problem{Kind: Truncated, Seq: rep.LastSeq + 1, Last: newest.Seq, Line: newest.Line,
			Msg: fmt.Sprintf("log ends at %d but published checkpoint at %d says %d existed — entries %d-%d deleted (line %d of the published checkpoints)",
				rep.LastSeq, newest.Seq, newest.Seq, rep.LastSeq+1, newest.Seq, newest.Line)})
	}
	return out
}

// mismatch is the problem of a checkpoint with a good signature whose hash
// is not its entry's: the key signed another history.
func mismatch(seq int64, line int, where string) Problem {
	return Problem{Kind: CheckpointMismatch, Seq: seq, Last: seq, Line: line,
		Msg: fmt.Sprintf("%s: hash differs from entry %d — an entry at or before %d was changed and the chain rewritten", where, seq, seq)}
}

// uncovered holds the entries no checkpoint covers to the writer's
// promise: each is signed within the checkpoint interval. Entries older
// than that, or dated in the future, had their checkpoints deleted or were
// rewritten; younger ones are a limit of the report. An empty log is a
// problem unless a published copy says it was never signed.
func (l *Log) uncovered(ctx context.Context, rep *Report, against bool) ([]Problem, error) {
	if rep.Entries == 0 {
		if against {
			return nil, nil // an empty copy: never signed, so never longer
		}
		return []Problem{{Kind: Empty, Msg: "the log is empty: nothing in the database shows it was not emptied — " +
			"verify it against a copy of the published checkpoints, which must be empty too"}}, nil
	}
	if rep.Covered >= rep.LastSeq {
		return nil, nil
	}
	first, last := rep.Covered+1, rep.LastSeq
	span := fmt.Sprintf("entries %d-%d", first, last)
	them := "them"
	if first == last {
		span, them = fmt.Sprintf("entry %d", first), "it"
	}
	now := l.now()
	var oldest, newest time.Time
	var oldestSeq, newestSeq int64
	rows, err := l.db.QueryContext(ctx, `SELECT seq, time FROM audit_entries WHERE seq > ? ORDER BY seq`, rep.Covered)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var text string
		if err := rows.Scan(&seq, &text); err != nil {
			return nil, err
		}
		t, err := time.Parse(timeFormat, text)
		if err != nil {
			continue // reported as Edited
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest, oldestSeq = t, seq
		}
		if t.After(newest) {
			newest, newestSeq = t, seq
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case !oldest.IsZero() && now.Sub(oldest) > l.interval+clockSlack:
		return []Problem{{Kind: Uncovered, Seq: first, Last: last,
			Msg: fmt.Sprintf("%s: no checkpoint covers %s, yet entry %d was written at %s, more than %s ago (the writer signs every entry within %s) — "+
				"checkpoints deleted, the log cut back or rewritten, or the server stopped without its shutdown checkpoint and has not started since",
				span, them, oldestSeq, oldest.Format(time.RFC3339), l.interval, l.interval)}}, nil
	case newest.Sub(now) > clockSlack:
		return []Problem{{Kind: Uncovered, Seq: first, Last: last,
			Msg: fmt.Sprintf("%s: no checkpoint covers %s, and entry %d is dated %s, in the future — rewritten to look recent",
				span, them, newestSeq, newest.Format(time.RFC3339))}}, nil
	}
	rep.Limits = append(rep.Limits, fmt.Sprintf("%s: younger than the checkpoint interval (%s) and not signed yet; deleting %s would leave no trace", span, l.interval, them))
	return nil, nil
}
