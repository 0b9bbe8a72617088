package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

// Client calls one Holdfast control plane. It is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
	ua   string
	now  func() time.Time // tests move it

	keyID     string
	keySecret []byte

	// mu guards sess and is held across a refresh: a refresh token is
	// good once, so concurrent requests that find the access token stale
	// must wait for one refresh rather than each spend the token.
	mu   sync.Mutex
	sess Session
	hook func(Session) error

	tls tlsOptions // collected by the options, applied by New
}

// Option configures a Client.
type Option func(*Client) error

// New returns a client of the server at baseURL (https://HOST[:PORT]).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: want https://HOST[:PORT]", baseURL)
	}
	c := &Client{base: u, now: time.Now, ua: "holdfast-go/" + api.Version}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.keyID != "" && c.sess != (Session{}) {
		return nil, errors.New("give either a session or an API key, not both")
	}
	if c.hc, err = c.tls.apply(c.hc); err != nil {
		return nil, err
	}
	return c, nil
}

// WithHTTPClient sends requests with hc instead of a client of its own.
// TLS options, if any, are applied to a copy of its transport, which must
// then be an *http.Transport. Do not set hc.Timeout: it would cut event
// streams and long polls short; use contexts instead.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		c.hc = hc
		return nil
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.ua = ua
		return nil
	}
}

// WithAPIKey signs every request with an API key: its id and its secret as
// the server answered it (base64url), e.g. from CreateAPIKey.
func WithAPIKey(id, secret string) Option {
	return func(c *Client) error {
		b, err := DecodeAPIKeySecret(secret)
		if err != nil {
			return err
		}
		if id == "" {
			return errors.New("API key: the id is empty")
		}
		c.keyID, c.keySecret = id, b
		return nil
	}
}

// DecodeAPIKeySecret decodes an API key's secret as the server answers it
// (base64url without padding; padding and surrounding space are
// tolerated, for secrets read from files).
func DecodeAPIKeySecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	b, err := base64URL.DecodeString(s)
	if err != nil || len(b) < 16 {
		return nil, errors.New("API key secret: not a secret the server gave out (want base64url, at least 16 bytes)")
	}
	return b, nil
}

var base64URL = base64.RawURLEncoding

// call is one API request.
type call struct {
	method  string
	path    string   // with {} for each of elems, escaped when sent
	elems   []string // path elements: names, ids
	query   url.Values
	ifMatch int64 // sent as If-Match: "<version>" when not 0
	in      any   // JSON body
	out     any   // decoded from a 2xx answer
	public  bool  // sent without credentials (login, refresh)
	header  http.Header
}

// do sends k and decodes its answer.
func (c *Client) do(ctx context.Context, k call) error {
	var body []byte
	if k.in != nil {
		var err error
		if body, err = json.Marshal(k.in); err != nil {
			return fmt.Errorf("%s %s: encoding the request: %w", k.method, k.path, err)
		}
	}
	resp, err := c.send(ctx, k, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decode(resp, k.out)
}

// send sends k with credentials and returns a response of any status.
// A request refused with 401 under a session is sent once more after a
// refresh: the access token may have expired on the way, or been revoked
// by a refresh elsewhere.
func (c *Client) send(ctx context.Context, k call, body []byte) (*http.Response, error) {
	u, err := c.url(k)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, k.method, u, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", k.method, k.path, err)
		}
		maps(req.Header, k.header)
		req.Header.Set("User-Agent", c.ua)
		if req.Header.Get("Accept") == "" {
			req.Header.Set("Accept", "application/json, application/problem+json")
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if k.ifMatch != 0 {
			req.Header.Set("If-Match", `"`+strconv.FormatInt(k.ifMatch, 10)+`"`)
		}
		var token string
		if !k.public {
			if token, err = c.authorize(ctx, req, body); err != nil {
				return nil, err
			}
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // it would name the request a second time
			}
			return nil, fmt.Errorf("%s %s: %w", k.method, req.URL.Redacted(), err)
		}
		if resp.StatusCode == http.StatusUnauthorized && token != "" && attempt == 0 && c.canRefresh() {
			// The server authenticates before it does anything, so
			// sending the request again cannot do it twice.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if err := c.refreshAfter(ctx, token); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

func maps(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}

// url is k's absolute URL, each path element escaped.
func (c *Client) url(k call) (string, error) {
	var b strings.Builder
	b.WriteString(strings.TrimRight(c.base.String(), "/"))
	rest, i := k.path, 0
	for {
		before, after, found := strings.Cut(rest, "{}")
		b.WriteString(before)
		if !found {
			break
		}
		if i >= len(k.elems) || k.elems[i] == "" {
			return "", fmt.Errorf("%s %s: a name in the path is empty", k.method, k.path)
		}
		b.WriteString(url.PathEscape(k.elems[i]))
		i++
		rest = after
	}
	if q := k.query.Encode(); q != "" {
		b.WriteString("?" + q)
	}
	return b.String(), nil
}

// authorize adds the client's credentials to req and returns the access
// token it used ("" when it signed or has none).
func (c *Client) authorize(ctx context.Context, req *http.Request, body []byte) (string, error) {
	if c.keyID != "" {
		return "", auth.SignRequest(req, body, c.keyID, c.keySecret, c.now())
	}
	token, err := c.accessToken(ctx)
	if err != nil || token == "" {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return token, nil
}

// decode reads a 2xx answer into out, and any other into an *api.Problem.
func decode(resp *http.Response, out any) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return problemOf(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what the API promises: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// problemOf makes the problem of a non-2xx answer, also when the answer is
// not a problem document (a proxy's error page, say).
func problemOf(resp *http.Response) *api.Problem {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var p api.Problem
	if err := json.Unmarshal(b, &p); err != nil || p.Status == 0 {
		detail := strings.TrimSpace(string(b))
		if len(detail) > 200 {
			detail = detail[:200] + "…"
		}
		p = api.Problem{Type: "about:blank", Detail: detail}
	}
	p.Status = resp.StatusCode
	if p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
	}
	if p.Instance == "" && resp.Request != nil {
		p.Instance = resp.Request.URL.Path
	}
	return &p
}

// IsStatus reports whether err is a problem answered with status.
func IsStatus(err error, status int) bool {
	var p *api.Problem
	return errors.As(err, &p) && p.Status == status
}
