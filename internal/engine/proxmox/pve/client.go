// Package pve is a small typed client for the parts of the Proxmox VE REST
// API (api2/json) that the proxmox engine uses: nodes, cluster resources,
// VM clone, config, resize, power and delete, and UPID tasks.
//
// It authenticates with an API token, can pin the server's TLS
// certificate by its SHA-256 fingerprint (PVE clusters usually run on
// self-signed certificates), encodes form bodies strictly (every byte but
// A-Z a-z 0-9 - _ . ~ percent-encoded), and follows every write that
// answers a UPID by polling the task to its end with backoff, checking its
// exit status.
//
// Failures of the moment (no answer, a dropped connection, a 5xx that is
// neither a refusal nor a lock) are retried a few times with backoff.
// Errors are typed (Error, TaskError, TaskTimeoutError, ConnError) and
// IsRetryable tells the caller which ones are worth another try later.
// Retried writes may have been carried out by the failed attempt (a
// dropped answer): a retried clone may then report that its VMID exists.
// Callers resolve that by observing, as the engine does for every step.
package pve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// APIPrefix is where PVE serves its JSON API.
const APIPrefix = "/api2/json"

// Config configures a Client.
type Config struct {
	// URL is the API endpoint without the API prefix, e.g.
	// https://pve1.example.net:8006.
	URL string
	// TokenID is the API token's ID, "user@realm!tokenid".
	TokenID string
	// Secret is the token's secret (a UUID).
	Secret string
	// Fingerprint, when set, pins the server certificate by the SHA-256 of
	// its DER form ("AB:CD:…", as `pvenode cert info` prints it) instead
	// of verifying it against certificate authorities.
	Fingerprint string
	// Transport replaces the default HTTP transport (tests). It is used
	// as given: Fingerprint must not be set with it.
	Transport http.RoundTripper
	// Retries is how often a request failing transiently is retried;
	// 0 means the default of 5, a negative value means never.
	Retries int
	// RetryWait is the first wait before a retry; it doubles up to 5 s.
	// Default 200 ms.
	RetryWait time.Duration
	// PollMin and PollMax bound the wait between task status polls, which
	// doubles from PollMin. Defaults 100 ms and 2 s.
	PollMin, PollMax time.Duration
	// TaskTimeout is how long a task may run before the client stops
	// waiting for it with a TaskTimeoutError. Default 15 min.
	TaskTimeout time.Duration
	// RequestTimeout bounds one HTTP attempt. Default 30 s.
	RequestTimeout time.Duration
}

// Client talks to one PVE API endpoint. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	auth string
	http *http.Client
}

// New checks cfg and returns a client; it makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("pve: URL %q: want https://host:8006", cfg.URL)
	}
	user, name, ok := strings.Cut(cfg.TokenID, "!")
	if !ok || !strings.Contains(user, "@") || name == "" || strings.Contains(cfg.TokenID, "=") {
		return nil, fmt.Errorf("pve: token ID %q: want user@realm!tokenid", cfg.TokenID)
	}
	if cfg.Secret == "" {
		return nil, errors.New("pve: token secret is empty")
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 200 * time.Millisecond
	}
	if cfg.PollMin <= 0 {
		cfg.PollMin = 100 * time.Millisecond
	}
	if cfg.PollMax < cfg.PollMin {
		cfg.PollMax = max(2*time.Second, cfg.PollMin)
	}
	if cfg.TaskTimeout <= 0 {
		cfg.TaskTimeout = 15 * time.Minute
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	rt := cfg.Transport
	switch {
	case rt != nil && cfg.Fingerprint != "":
		return nil, errors.New("pve: Fingerprint and Transport are exclusive")
	case cfg.Fingerprint != "":
		want, err := parseFingerprint(cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		t := transport()
		t.TLSClientConfig = pinned(want)
		rt = t
	case rt == nil:
		rt = transport()
	}
	return &Client{
		cfg:  cfg,
		base: strings.TrimSuffix(u.String(), "/") + APIPrefix,
		auth: "PVEAPIToken=" + cfg.TokenID + "=" + cfg.Secret,
		http: &http.Client{Transport: rt},
	}, nil
}

// idleConns is how many connections to the API stay open between
// requests: enough for the engine's parallel reads, which would otherwise
// each pay a new TLS handshake (Go keeps 2 by default).
const idleConns = 64

func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idleConns
	return t
}

// Fingerprint is the SHA-256 fingerprint of a certificate in the form
// Config.Fingerprint takes.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func parseFingerprint(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("pve: fingerprint %q: want the 32-byte SHA-256 in hex, as AB:CD:…", s)
	}
	return b, nil
}

// pinned trusts exactly the certificate whose SHA-256 is want. Chain
// verification is replaced, not skipped: VerifyConnection rejects every
// other certificate.
func pinned(want []byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyConnection against the pinned fingerprint
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("pve: server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return errPinMismatch
			}
			return nil
		},
	}
}

// Escape percent-encodes every byte of s except A-Z a-z 0-9 - _ . ~, with
// upper-case hex. It is how the client encodes form bodies, and how
// sshkeys must be encoded before that: PVE decodes the form, then checks
// that the value is still URL-encoded, and decodes it again when writing
// the cloud-init data.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// encodeForm writes values as a form body in a stable order.
func encodeForm(values url.Values) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		for _, v := range values[k] {
			parts = append(parts, Escape(k)+"="+Escape(v))
		}
	}
	return strings.Join(parts, "&")
}

// do sends one API call, retrying transient failures, and decodes the
// answer's data into out (when out is not nil).
func (c *Client) do(ctx context.Context, method, path string, params url.Values, out any) error {
	wait := c.cfg.RetryWait
	for attempt := 0; ; attempt++ {
		err := c.once(ctx, method, path, params, out)
		if err == nil || attempt >= c.cfg.Retries || !transient(ctx, err) {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (c *Client) once(ctx context.Context, method, path string, params url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	target := c.base + path
	var body io.Reader
	form := encodeForm(params)
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader(form)
	} else if form != "" {
		target += "?" + form
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("pve: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := context.Cause(ctx); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("pve: %s %s: %w", method, path, ctxErr)
		}
		if ctx.Err() != nil || connFailure(err) {
			// No answer (in time): the request may or may not have been
			// carried out.
			return &ConnError{Method: method, Path: path, Err: err}
		}
		return fmt.Errorf("pve: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return &ConnError{Method: method, Path: path, Err: err}
	}
	var env struct {
		Data    json.RawMessage   `json:"data"`
		Message string            `json:"message"`
		Errors  map[string]string `json:"errors"`
	}
	decodeErr := json.Unmarshal(raw, &env)
	if resp.StatusCode != http.StatusOK {
		msg := env.Message
		if msg == "" {
			// PVE always puts the message in the status line.
			_, msg, _ = strings.Cut(resp.Status, " ")
		}
		return &Error{Method: method, Path: path, StatusCode: resp.StatusCode,
			Message: strings.TrimSpace(msg), Params: env.Errors}
	}
	if decodeErr != nil {
		return fmt.Errorf("pve: %s %s: decoding the answer: %w", method, path, decodeErr)
	}
	if out == nil || len(env.Data) == 0 || string(env.Data) == "null" {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("pve: %s %s: decoding the answer's data: %w", method, path, err)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// number decodes a PVE number, which arrives as a JSON number or, from
// some endpoints, as a string.
type number float64

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*n = number(f)
	return nil
}

// UPID is a parsed task ID, "UPID:node:pid:pstart:starttime:type:id:user:".
type UPID struct {
	Raw, Node, Type, ID, User string
}

// ParseUPID splits a UPID into its fields.
func ParseUPID(s string) (UPID, error) {
	f := strings.Split(s, ":")
	if len(f) != 9 || f[0] != "UPID" || f[1] == "" {
		return UPID{}, fmt.Errorf("pve: %q is not a UPID", s)
	}
	return UPID{Raw: s, Node: f[1], Type: f[5], ID: f[6], User: f[7]}, nil
}

// TaskStatus is a task's state.
type TaskStatus struct {
	UPID       string
	Node       string
	Type       string
	ID         string
	User       string
	Status     string // running or stopped
	ExitStatus string // set when stopped: "OK" or the error
	StartTime  time.Time
}

// TaskStatus reads the state of a task.
func (c *Client) TaskStatus(ctx context.Context, upid string) (TaskStatus, error) {
	u, err := ParseUPID(upid)
	if err != nil {
		return TaskStatus{}, err
	}
	var w struct {
		UPID       string `json:"upid"`
		Node       string `json:"node"`
		Type       string `json:"type"`
		ID         string `json:"id"`
		User       string `json:"user"`
		Status     string `json:"status"`
		ExitStatus string `json:"exitstatus"`
		StartTime  number `json:"starttime"`
	}
	path := "/nodes/" + url.PathEscape(u.Node) + "/tasks/" + url.PathEscape(upid) + "/status"
	if err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return TaskStatus{}, err
	}
	return TaskStatus{UPID: w.UPID, Node: w.Node, Type: w.Type, ID: w.ID, User: w.User,
		Status: w.Status, ExitStatus: w.ExitStatus, StartTime: time.Unix(int64(w.StartTime), 0)}, nil
}

// WaitTask polls a task until it stops, with backoff from PollMin to
// PollMax, and fails unless its exit status is "OK" (or PVE's
// "WARNINGS: n", a success that logged warnings). A task still running
// after TaskTimeout is a TaskTimeoutError; it may still finish.
func (c *Client) WaitTask(ctx context.Context, upid string) error {
	start := time.Now()
	wait := c.cfg.PollMin
	for {
		st, err := c.TaskStatus(ctx, upid)
		if err != nil {
			return fmt.Errorf("waiting for task: %w", err)
		}
		if st.Status == "stopped" {
			if st.ExitStatus == "OK" || strings.HasPrefix(st.ExitStatus, "WARNINGS: ") {
				return nil
			}
			return &TaskError{UPID: upid, ExitStatus: st.ExitStatus}
		}
		elapsed := time.Since(start)
		if elapsed >= c.cfg.TaskTimeout {
			return &TaskTimeoutError{UPID: upid, After: elapsed.Round(time.Millisecond)}
		}
		if err := sleep(ctx, min(wait, c.cfg.TaskTimeout-elapsed)); err != nil {
			return fmt.Errorf("waiting for task %s: %w", upid, err)
		}
		wait = min(2*wait, c.cfg.PollMax)
	}
}

// task sends a write that answers a UPID and waits for the task. A write
// that answers null finished synchronously.
func (c *Client) task(ctx context.Context, method, path string, params url.Values) error {
	var upid string
	if err := c.do(ctx, method, path, params, &upid); err != nil {
		return err
	}
	if upid == "" {
		return nil
	}
	return c.WaitTask(ctx, upid)
}
