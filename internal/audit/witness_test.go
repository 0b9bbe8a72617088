package audit

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// witnessServer is a witness on loopback: it keeps each line it is sent
// once, as a witness should, and can be made to refuse or to hang.
type witnessServer struct {
	*httptest.Server
	down    atomic.Bool   // answer 503
	hang    chan struct{} // while open, requests wait (set before the first)
	arrived chan struct{} // a token per request received
	seen    chan struct{} // a token per request handled

	mu    sync.Mutex
	lines [][]byte // kept, in order
	have  map[string]bool
	dups  int // lines sent again
	types []string
}

// hangUntilReleased makes requests wait until release is called (or the
// test ends, before the server closes).
func (w *witnessServer) hangUntilReleased(t *testing.T) (release func()) {
	w.hang = make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(w.hang) }) }
	t.Cleanup(release)
	return release
}

func newWitness(t *testing.T) *witnessServer {
	w := &witnessServer{arrived: make(chan struct{}, 1<<16), seen: make(chan struct{}, 1<<16), have: map[string]bool{}}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.arrived <- struct{}{}
		defer func() { w.seen <- struct{}{} }()
		// Read first: only then does the server notice a client that
		// gave up, and end r.Context().
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if w.hang != nil {
			select {
			case <-w.hang:
			case <-r.Context().Done():
				return
			}
		}
		if r.Context().Err() != nil {
			return
		}
		if w.down.Load() || r.Method != http.MethodPost {
			http.Error(rw, "not now", http.StatusServiceUnavailable)
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.types = append(w.types, r.Header.Get("Content-Type"))
		for _, line := range bytes.SplitAfter(body, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if w.have[string(line)] {
				w.dups++
				continue
			}
			w.have[string(line)] = true
			w.lines = append(w.lines, line)
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(w.Close)
	return w
}

// kept is what the witness holds, as a file.
func (w *witnessServer) kept() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Join(w.lines, nil)
}

// await waits, request by request, until the witness holds exactly the
// file's content; the deadline only bounds a failing test.
func (w *witnessServer) await(t *testing.T, file string) {
	t.Helper()
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for !bytes.Equal(w.kept(), want) {
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("the witness holds\n%s\nwant\n%s", w.kept(), want)
		}
	}
}

// requests waits until the witness has received n more requests.
func (w *witnessServer) requests(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-w.arrived:
		case <-deadline:
			t.Fatalf("the witness was not asked again")
		}
	}
}

// witnessTiming shortens the POST timeout and the first retry for tests.
func witnessTiming(timeout, retry time.Duration) Option {
	return func(l *Log) { l.witTimeout, l.witRetry = timeout, retry }
}

// TestWitnessReceivesCheckpoints: a real HTTP witness receives every
// published line, in order, as JSON lines; its copy verifies the log.
func TestWitnessReceivesCheckpoints(t *testing.T) {
	w := newWitness(t)
	l, pub, _, file := newPublishing(t, 100, Witness(w.URL+"/holdfast/tasmanian"))
	fill(t, l, 250)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.await(t, file)
	w.mu.Lock()
	types := w.types
	w.mu.Unlock()
	for _, ct := range types {
		if ct != "application/jsonl" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	ps, err := ReadPublished(bytes.NewReader(w.kept()))
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyAgainst(t, l, pub, ps); !rep.OK() || rep.Published != 3 {
		t.Fatalf("against the witness's copy:\n%s", rep)
	}
}

// TestWitnessDownLosesNothing: while the witness refuses, appends and
// checkpoints go on and the lines wait in the file; they are sent when it
// is back — after a restart too, from where it stopped, never twice.
func TestWitnessDownLosesNothing(t *testing.T) {
	w := newWitness(t)
	w.down.Store(true)
	opts := []Option{Witness(w.URL), witnessTiming(10*time.Second, time.Millisecond)}
	l, pub, path, file := newPublishing(t, 100, opts...)
	t.Cleanup(func() { l.Close() })
	fill(t, l, 250)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.requests(t, 3) // refused, and asked again
	if got := seqs(readPublished(t, file)); len(got) != 3 || len(w.kept()) != 0 {
		t.Fatalf("published %v; the witness holds %q", got, w.kept())
	}
	l = reopen(t, l, path, file, opts...) // a restart while it is down
	w.requests(t, 1)
	w.down.Store(false)
	w.await(t, file)
	fill(t, l, 100)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.await(t, file)
	w.mu.Lock()
	dups := w.dups
	w.mu.Unlock()
	if dups != 0 {
		t.Errorf("%d lines were sent twice", dups)
	}
	ps, err := ReadPublished(bytes.NewReader(w.kept()))
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyAgainst(t, l, pub, ps); !rep.OK() || rep.LastPublished != 350 {
		t.Fatalf("against the witness's copy:\n%s", rep)
	}
}

// TestWitnessHangingDoesNotBlock: a witness that never answers holds up
// neither appends nor Close; each POST gives up after its timeout, and the
// lines are delivered once the witness answers again.
func TestWitnessHangingDoesNotBlock(t *testing.T) {
	w := newWitness(t)
	release := w.hangUntilReleased(t)
	l, _, _, file := newPublishing(t, 10, Witness(w.URL), witnessTiming(50*time.Millisecond, time.Millisecond))
	fill(t, l, 100) // ten checkpoints, each published while the witness hangs
	if got := seqs(readPublished(t, file)); len(got) != 10 {
		t.Fatalf("published %v", got)
	}
	w.requests(t, 2) // the first POST timed out and was tried again
	release()
	w.await(t, file)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWitnessCloseWhileHanging: Close does not wait for a hanging witness.
func TestWitnessCloseWhileHanging(t *testing.T) {
	w := newWitness(t)
	w.hangUntilReleased(t)
	l, _, _, _ := newPublishing(t, 10, Witness(w.URL)) // the default ten-second timeout
	fill(t, l, 10)
	w.requests(t, 1) // the POST is under way
	done := make(chan error)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the witness")
	}
}
