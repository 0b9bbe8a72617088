package oidc

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
)

// FlowLifetime is how long a user has between Begin and Finish.
const FlowLifetime = 10 * time.Minute

// FlowKeyLen is the size of the key that seals flows.
const FlowKeyLen = auth.MasterKeyLen

// FlowCookieName names the cookie made by [Provider.FlowCookie].
const FlowCookieName = "holdfast_oidc_flow"

var (
	// ErrFlowInvalid means the flow is missing, tampered with, or was
	// sealed under another key or for another provider. The causes are not
	// told apart on purpose.
	ErrFlowInvalid = errors.New("oidc: login flow missing or invalid; start the login again")
	// ErrFlowExpired means more than FlowLifetime passed since Begin.
	ErrFlowExpired = errors.New("oidc: login flow expired; start the login again")
)

// flow is what Begin remembers for Finish. Only its sealed form leaves the
// server.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds
}

func (p *Provider) sealFlow(f flow) (string, error) {
	pt, err := json.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("oidc: seal flow: %w", err)
	}
	ct, err := p.box.Seal(pt, p.flowAD)
	if err != nil {
		return "", fmt.Errorf("oidc: seal flow: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(ct), nil
}

func (p *Provider) openFlow(sealed string) (flow, error) {
	var f flow
	ct, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(ct) == 0 {
		return f, ErrFlowInvalid
	}
	pt, err := p.box.Open(ct, p.flowAD)
	if err != nil {
		return f, ErrFlowInvalid
	}
	if err := json.Unmarshal(pt, &f); err != nil || f.State == "" || f.Nonce == "" || f.Verifier == "" {
		return flow{}, ErrFlowInvalid
	}
	if !p.now().Before(time.Unix(f.Expires, 0)) {
		return flow{}, ErrFlowExpired
	}
	return f, nil
}

// FlowCookie returns the cookie that carries flow from Begin to Finish:
// HttpOnly; SameSite=Lax, because the provider's redirect back is a
// cross-site navigation that Strict would strip the cookie from; Secure
// when RedirectURL is https; sent only to RedirectURL's path; kept for
// FlowLifetime. FlowCookie("") returns the cookie that deletes it.
func (p *Provider) FlowCookie(flow string) *http.Cookie {
	c := &http.Cookie{
		Name:     FlowCookieName,
		Value:    flow,
		Path:     p.redirect.Path,
		MaxAge:   int(FlowLifetime / time.Second),
		Secure:   p.redirect.Scheme == "https",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if flow == "" {
		c.MaxAge = -1
	}
	return c
}

func equalSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
