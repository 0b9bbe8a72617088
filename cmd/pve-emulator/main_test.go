package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/engine/proxmox/pve"
)

// emulatorRun is `pve-emulator` running in the test: the
// lines it printed before serving, and how to stop it.
type emulatorRun struct {
	url, fingerprint, token string
	stop                    func() error // interrupts the command, answers what it returned
}

// startEmulator runs the command until the test ends (or stop) and reads
// what it prints up to the line with the token.
func startEmulator(t *testing.T, args ...string) emulatorRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	root := newRoot()
	root.SetOut(pw)
	root.SetErr(pw)
	root.SetArgs(append([]string{"--listen", "127.0.0.1:0"}, args...))
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(ctx)
		_ = pw.CloseWithError(io.EOF)
		done <- err
	}()
	var r emulatorRun
	var printed []string
	sc := bufio.NewScanner(pr)
	for r.token == "" && sc.Scan() {
		line := sc.Text()
		printed = append(printed, line)
		switch {
		case strings.HasPrefix(line, "Proxmox VE API emulator on "):
			r.url = strings.Fields(line)[5]
		case strings.HasPrefix(line, "fingerprint: "):
			r.fingerprint = strings.TrimPrefix(line, "fingerprint: ")
		case strings.HasPrefix(line, "token: "):
			r.token = strings.TrimPrefix(line, "token: ")
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	stopped := false
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("the emulator did not stop")
		}
	}
	t.Cleanup(func() { _ = r.stop() })
	if r.token == "" {
		t.Fatalf("the emulator printed no token:\n%s\n(ended: %v)", strings.Join(printed, "\n"), r.stop())
	}
	return r
}

func (r emulatorRun) client(t *testing.T, fingerprint string) *pve.Client {
	t.Helper()
	id, secret, _ := strings.Cut(r.token, "=")
	c, err := pve.New(pve.Config{URL: strings.TrimSuffix(r.url, pve.APIPrefix), TokenID: id, Secret: secret,
		Fingerprint: fingerprint, Retries: -1, PollMin: time.Millisecond, PollMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pinnedHTTP2 is a transport that offers HTTP/2 and trusts only the
// certificate whose fingerprint the emulator printed.
func pinnedHTTP2(t *testing.T, r emulatorRun) *http.Transport {
	t.Helper()
	return &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection against the printed fingerprint
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || pve.Fingerprint(cs.PeerCertificates[0]) != r.fingerprint {
				return errors.New("not the certificate the emulator printed")
			}
			return nil
		},
	}}
}

var fingerprintRe = regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`)

// TestServesHTTPS: by default the emulator serves HTTPS
// with a fresh self-signed certificate whose fingerprint it prints, so
// that a client (and a spec's proxmox: fingerprint:) can pin it; task
// durations follow --durations.
func TestServesHTTPS(t *testing.T) {
	r := startEmulator(t, "--nodes", "pve1,pve2", "--token", "root@pam!t=s3cret",
		"--durations", "0,qmclone=1h")
	if !strings.HasPrefix(r.url, "https://127.0.0.1:") || !strings.HasSuffix(r.url, "/api2/json") ||
		!fingerprintRe.MatchString(r.fingerprint) || r.token != "root@pam!t=s3cret" {
		t.Fatalf("printed %+v", r)
	}
	ctx := context.Background()
	c := r.client(t, r.fingerprint)
	if v, err := c.Version(ctx); err != nil || v.Version != "9.1.3" {
		t.Fatalf("version over the pinned certificate: %q %v", v, err)
	}
	other := strings.Repeat("AB:", 31) + "AB"
	if _, err := r.client(t, other).Version(ctx); err == nil || !strings.Contains(err.Error(), "pinned fingerprint") {
		t.Fatalf("a client pinned to another certificate: %v", err)
	}
	// Not HTTP/2: pveproxy speaks HTTP/1.1, and its errors need a status line.
	resp, err := (&http.Client{Transport: pinnedHTTP2(t, r)}).Get(r.url + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.Status != "401 No ticket" {
		t.Fatalf("answer over a client offering HTTP/2: %s %s", resp.Proto, resp.Status)
	}

	// --durations 0,qmclone=1h: a create and a start are over at once, a
	// clone runs on (the client gives up waiting; the new VM is still
	// locked by the clone).
	if err := c.Create(ctx, "pve2", pve.CreateOptions{VMID: 200, Name: "b", DiskGiB: 1, Storage: "local-lvm"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "pve2", 200); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Status(ctx, "pve2", 200); err != nil || s.Status != "running" {
		t.Fatalf("VM 200 after its start: %+v %v", s, err)
	}
	wait, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := c.Clone(wait, "pve1", 9000, pve.CloneOptions{NewID: 100, Name: "a"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a clone with qmclone=1h: %v", err)
	}
	if cfg, err := c.Config(ctx, "pve1", 100); err != nil || cfg.Lock != "clone" {
		t.Fatalf("VM 100 during its clone: %+v %v", cfg, err)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("interrupted: %v", err)
	}
}

func TestPlainHTTP(t *testing.T) {
	r := startEmulator(t, "--http", "--template", "0")
	if !strings.HasPrefix(r.url, "http://127.0.0.1:") || r.fingerprint != "" || !strings.HasPrefix(r.token, "root@pam!holdfast=") {
		t.Fatalf("printed %+v", r)
	}
	if v, err := r.client(t, "").Version(context.Background()); err != nil || v.Version != "9.1.3" {
		t.Fatalf("version over plain HTTP: %q %v", v, err)
	}
}

func TestRefusesBadDurations(t *testing.T) {
	for arg, want := range map[string]string{
		"qmclone=fast": `--durations: qmclone=fast: not a duration (like 200ms or 2s)`,
		"qmfly=1s":     `--durations: unknown task type "qmfly" (known: `,
		"slow":         `--durations: "slow" is neither TYPE=DURATION nor a scale factor`,
	} {
		root := newRoot()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"--listen", "127.0.0.1:0", "--durations", arg})
		err := root.Execute()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("--durations %s: %v, want %s…", arg, err, want)
		}
	}
}
