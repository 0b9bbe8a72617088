package audit

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"
)

// A witness is a server outside the cloud that keeps a copy of the
// published checkpoints: each POST carries one or more whole lines of the
// published file (Content-Type application/jsonl), in file order, and any
// 2xx answer means "kept". The same line may arrive twice (after a restart
// in the middle of a POST); a witness keeps the first.
const witnessType = "application/jsonl"

// witness sends the published file to a witness URL in the background. Its
// progress — how many bytes of the file the witness has acknowledged — is
// kept in the audit_witness table, so a witness that was down, or a
// restart, resumes where it stopped. It never holds l.mu: appends never
// wait for it.
type witness struct {
	url    *url.URL
	name   string // url without a password: for logs and the progress row
	path   string // the published file
	db     *sql.DB
	log    *slog.Logger
	client *http.Client
	// retry is the first wait after a failure, doubling up to maxRetry.
	retry, maxRetry time.Duration
	batch           int // bytes per POST, at most (whole lines; at least one)

	kickc  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// witnessURL checks the witness address once, where it is configured.
func witnessURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("witness URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness URL %q: want http:// or https:// and a host", u.Redacted())
	}
	return u, nil
}

// startWitness starts sending l's published file to u.
func startWitness(l *Log, u *url.URL) *witness {
	ctx, cancel := context.WithCancel(context.Background())
	w := &witness{url: u, name: u.Redacted(), path: l.pubPath, db: l.db, log: l.log,
		// A POST that hangs gives up and is tried again later.
		client: &http.Client{Timeout: l.witTimeout},
		retry:  l.witRetry, maxRetry: 5 * time.Minute, batch: 64 << 10,
		kickc: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

// kick says the file has grown; it never blocks.
func (w *witness) kick() {
	select {
	case w.kickc <- struct{}{}:
	default:
	}
}

// stop ends the sender and waits for it; a POST under way is abandoned.
func (w *witness) stop() {
	w.cancel()
	<-w.done
}

func (w *witness) run(ctx context.Context) {
	defer close(w.done)
	var wait time.Duration
	for {
		err := w.sendAll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait = min(max(2*wait, w.retry), w.maxRetry)
			w.log.Warn("audit: the witness did not take the published checkpoints; they are kept in the file and sent again",
				"witness", w.name, "retry_in", wait, "err", err)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		default:
			wait = 0
			select {
			case <-ctx.Done():
				return
			case <-w.kickc:
			}
		}
	}
}

// sendAll POSTs the file from where the witness stopped to its last whole
// line, a batch at a time, recording progress after each.
func (w *witness) sendAll(ctx context.Context) error {
	var sent int64
	err := w.db.QueryRowContext(ctx, `SELECT sent FROM audit_witness WHERE url = ?`, w.name).Scan(&sent)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("witness progress: %w", err)
	}
	for {
		batch, err := w.read(&sent)
		if err != nil || len(batch) == 0 {
			return err
		}
		if err := w.post(ctx, batch); err != nil {
			return err
		}
		sent += int64(len(batch))
		if _, err := w.db.ExecContext(ctx, `INSERT INTO audit_witness (url, sent) VALUES (?, ?)
			ON CONFLICT (url) DO UPDATE SET sent = excluded.sent`, w.name, sent); err != nil {
			return fmt.Errorf("witness progress: %w", err)
		}
	}
}

// read returns the whole lines of the file after *sent, up to w.batch
// bytes (or one line, if longer). A file shorter than *sent was replaced:
// it is sent again from its start.
func (w *witness) read(sent *int64) ([]byte, error) {
	f, err := os.Open(w.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < *sent {
		*sent = 0
	}
	b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, *sent, st.Size()-*sent), int64(w.batch)))
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(b, '\n') + 1
	if end == 0 && int64(len(b)) == int64(w.batch) {
		// One line longer than a batch: send it whole.
		rest, err := io.ReadAll(io.NewSectionReader(f, *sent, st.Size()-*sent))
		if err != nil {
			return nil, err
		}
		b, end = rest, bytes.IndexByte(rest, '\n')+1
	}
	return b[:end], nil
}

func (w *witness) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", witnessType)
	resp, err := w.client.Do(req)
	if err != nil {
		return err // the client's error names the URL without its password
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("witness %s answered %s", w.name, resp.Status)
	}
	return nil
}
