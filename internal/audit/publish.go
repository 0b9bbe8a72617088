package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Published is a checkpoint as published outside the database: one line of
// JSON in the published checkpoints file, and what a witness receives.
//
//	{"seq":100,"time":"2026-03-01T12:00:00.123456Z","hash":"<hex>","sig":"<hex>","log":"tasmanian","key":"<hex>"}
//
// sig is the Ed25519 signature, under key, of seq, hash and time exactly as
// written (see Checkpoint); log is a label, not signed.
type Published struct {
	Checkpoint
	Log string            // the name of the log (the cloud's)
	Key ed25519.PublicKey // the key that signed it: the log's identity
	// Line is the line of the file it was read from (1 is the first);
	// zero when it was not read from a file.
	Line int
}

type publishedJSON struct {
	Seq  int64  `json:"seq"`
	Time string `json:"time"`
	Hash string `json:"hash"`
	Sig  string `json:"sig"`
	Log  string `json:"log"`
	Key  string `json:"key"`
}

// MarshalJSON writes p as one line of the published file (without the
// newline).
func (p Published) MarshalJSON() ([]byte, error) {
	return json.Marshal(publishedJSON{Seq: p.Seq, Time: p.Time.UTC().Format(timeFormat), Hash: hex.EncodeToString(p.Hash[:]),
		Sig: hex.EncodeToString(p.Sig), Log: p.Log, Key: hex.EncodeToString(p.Key)})
}

// UnmarshalJSON reads one line of the published file. It checks the form
// of every field, not the signature: Verify does that.
func (p *Published) UnmarshalJSON(b []byte) error {
	var w publishedJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.Seq < 1 {
		return fmt.Errorf("seq %d: want 1 or more", w.Seq)
	}
	t, err := time.Parse(timeFormat, w.Time)
	if err != nil || t.UTC().Format(timeFormat) != w.Time {
		// Only the canonical form is ever signed; another would not
		// survive a round trip through Published.
		return fmt.Errorf("time %q: not a UTC RFC 3339 time in canonical form", w.Time)
	}
	hash, err := fromHex("hash", w.Hash, sha256.Size)
	if err != nil {
		return err
	}
	sig, err := fromHex("sig", w.Sig, ed25519.SignatureSize)
	if err != nil {
		return err
	}
	key, err := fromHex("key", w.Key, ed25519.PublicKeySize)
	if err != nil {
		return err
	}
	*p = Published{Checkpoint: Checkpoint{Seq: w.Seq, Hash: [32]byte(hash), Time: t, Sig: sig}, Log: w.Log, Key: key}
	return nil
}

func fromHex(field, s string, size int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%s: want %d bytes in hex", field, size)
	}
	return b, nil
}

// ReadPublished reads a published checkpoints file (or a witness's copy of
// one), numbering each checkpoint with its line. Blank lines are skipped. A
// last line that does not end in a newline and does not parse was cut
// short by copying the file while a line was being written, and is
// skipped; any other line that does not parse is an error naming it.
func ReadPublished(r io.Reader) ([]Published, error) {
	var out []Published
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		complete := err == nil
		if len(bytes.TrimSpace(line)) > 0 {
			var p Published
			if perr := json.Unmarshal(line, &p); perr != nil {
				if !complete {
					break
				}
				return nil, fmt.Errorf("line %d: not a published checkpoint: %w", n, perr)
			}
			p.Line = n
			out = append(out, p)
		}
		if !complete {
			break
		}
	}
	return out, nil
}

// published is cp as the log publishes it.
func (l *Log) published(cp Checkpoint) Published {
	return Published{Checkpoint: cp, Log: l.name, Key: l.key.Public().(ed25519.PublicKey)}
}

// openPublished opens the published file for appending and writes to it
// every stored checkpoint it lacks: after a crash between a checkpoint's
// commit and its line, or when the file was lost. A line a crash left
// half-written is cut off first, so that the next line starts a line.
func (l *Log) openPublished(ctx context.Context) error {
	f, err := os.OpenFile(l.pubPath, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("published checkpoints: %w", err)
	}
	l.pub = f
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("published checkpoints %s: %w", l.pubPath, err)
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	if end < len(data) {
		if err := f.Truncate(int64(end)); err != nil {
			return fmt.Errorf("published checkpoints %s: cutting off a half-written line: %w", l.pubPath, err)
		}
		l.log.Warn("audit: cut off a half-written line of the published checkpoints; its checkpoint is written again",
			"file", l.pubPath, "at", end)
	}
	l.pubSize = int64(end)
	have := map[string]bool{}
	for i, line := range bytes.Split(data[:end], []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var p Published
		if err := json.Unmarshal(line, &p); err != nil {
			// Not ours: someone edited the file. Appending goes on; the
			// operator's copy, not this file, is what verification trusts.
			l.log.Error("audit: a line of the published checkpoints is not a checkpoint", "file", l.pubPath, "line", i+1, "err", err)
			continue
		}
		have[lineID(p.Seq, p.Sig)] = true
	}
	stored, err := scanCheckpoints(l.db.QueryContext(ctx, `SELECT seq, hash, time, sig FROM audit_checkpoints ORDER BY seq`))
	if err != nil {
		return fmt.Errorf("published checkpoints: reading stored ones: %w", err)
	}
	pub := l.key.Public().(ed25519.PublicKey)
	for _, c := range stored {
		if have[lineID(c.Seq, c.Sig)] {
			continue
		}
		if c.badHash || !ed25519.Verify(pub, signedBytes(c.Seq, c.Hash, c.timeText), c.Sig) {
			l.log.Error("audit: a stored checkpoint is not signed by this log's key; not publishing it (run audit verify)", "seq", c.Seq)
			continue
		}
		l.unfiled = append(l.unfiled, l.published(c.Checkpoint))
	}
	if n := len(l.unfiled); n > 0 {
		l.log.Warn("audit: publishing checkpoints the published file lacked (a crash before they were written?)",
			"file", l.pubPath, "count", n, "first", l.unfiled[0].Seq)
	}
	if err := l.file(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(l.pubPath))
}

// lineID identifies a line of the file: a checkpoint is written again
// only if a line with its seq and signature is missing.
func lineID(seq int64, sig []byte) string {
	return strconv.FormatInt(seq, 10) + "/" + hex.EncodeToString(sig)
}

// publish writes cp's line and hands it to the witness. A line that could
// not be written is kept and written before the next one (and by the next
// Open, from the database), so it is logged, not returned: the checkpoint
// itself is committed. The caller holds l.mu.
func (l *Log) publish(cp Checkpoint) {
	if l.pub == nil {
		return
	}
	l.unfiled = append(l.unfiled, l.published(cp))
	if err := l.file(); err != nil {
		l.log.Error("audit: checkpoint not yet published; it is written with the next one", "seq", cp.Seq, "err", err)
		return
	}
	if l.wit != nil {
		l.wit.kick()
	}
}

// file appends the unfiled lines and syncs them to disk. On failure the
// file is cut back to its last whole line so that a retry never leaves a
// fragment in the middle of the file. The caller holds l.mu.
func (l *Log) file() error {
	if len(l.unfiled) == 0 {
		return nil
	}
	var b []byte
	for _, p := range l.unfiled {
		line, err := json.Marshal(p)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	_, err := l.pub.Write(b)
	if err == nil {
		err = l.pub.Sync()
	}
	if err != nil {
		if terr := l.pub.Truncate(l.pubSize); terr != nil {
			err = errors.Join(err, terr)
		}
		return fmt.Errorf("published checkpoints %s: %w", l.pubPath, err)
	}
	l.pubSize += int64(len(b))
	l.unfiled = l.unfiled[:0]
	return nil
}

// syncDir makes a file created in dir survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
