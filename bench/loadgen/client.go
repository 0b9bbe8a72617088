package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

// pinnedClient talks HTTP/1.1 with keep-alive to servers whose
// certificates have one of the given SHA-256 fingerprints ("sha256:<hex>"),
// as `holdfast serve` prints them, and to no other; conns connections to
// each server at most.
func pinnedClient(fingerprints []string, conns int) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// A self-signed certificate: instead of a chain, the exact
			// certificate is checked, in VerifyConnection.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return fmt.Errorf("no server certificate")
				}
				sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
				if got := "sha256:" + hex.EncodeToString(sum[:]); !slices.Contains(fingerprints, got) {
					return fmt.Errorf("server certificate %s is none of the pinned %s", got, strings.Join(fingerprints, ", "))
				}
				return nil
			},
			ClientSessionCache: tls.NewLRUClientSessionCache(conns),
		},
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		MaxIdleConns:        conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr}
}

// cred authenticates requests: a bearer token or an API key.
type cred struct {
	bearer string
	keyID  string
	secret []byte
}

// client makes API calls, to each of its servers in turn: replicas answer
// for each other, so every request may go to any of them.
type client struct {
	bases []string
	next  atomic.Uint64
	hc    *http.Client
}

// base is the server the next request goes to (round robin).
func (c *client) base() string {
	return c.bases[(c.next.Add(1)-1)%uint64(len(c.bases))]
}

// newRequest builds a request with c's credentials; a signed request gets
// a fresh nonce each time (SignRequest makes one).
func (c *client) newRequest(ctx context.Context, cr cred, method, path string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base()+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case cr.bearer != "":
		req.Header.Set("Authorization", "Bearer "+cr.bearer)
	case cr.keyID != "":
		if err := auth.SignRequest(req, body, cr.keyID, cr.secret, time.Now()); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// call sends in (JSON, unless nil) and decodes the answer into out (unless
// nil); any status other than want is an error carrying the problem.
func (c *client) call(ctx context.Context, cr cred, method, path string, in, out any, want int) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := c.newRequest(ctx, cr, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// get sends a GET and returns the body, timing the request from send to
// the last byte of the answer.
func (c *client) get(ctx context.Context, cr cred, path string) ([]byte, time.Duration, error) {
	req, err := c.newRequest(ctx, cr, http.MethodGet, path, nil)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return nil, took, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, took, fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return b, took, nil
}

func (c *client) login(ctx context.Context, user, password string) (cred, error) {
	var tok api.Tokens
	err := c.call(ctx, cred{}, http.MethodPost, "/v1/auth/login", api.LoginRequest{User: user, Password: password}, &tok, http.StatusOK)
	return cred{bearer: tok.AccessToken}, err
}

// apiKey creates an API key for the caller; the secret comes base64url.
func (c *client) apiKey(ctx context.Context, cr cred, name string) (cred, error) {
	var k api.APIKeySecret
	if err := c.call(ctx, cr, http.MethodPost, "/v1/me/apikeys", api.APIKeyCreate{Name: name}, &k, http.StatusCreated); err != nil {
		return cred{}, err
	}
	secret, err := base64.RawURLEncoding.DecodeString(k.Secret)
	if err != nil {
		return cred{}, fmt.Errorf("API key secret: %w", err)
	}
	return cred{keyID: k.ID, secret: secret}, nil
}
