package oidc

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/holdfast/holdfast/internal/auth"
)

// providerTimeout bounds each exchange with the provider: discovery, and
// the code exchange with its key fetch.
const providerTimeout = 15 * time.Second

var (
	// ErrStateMismatch means the callback's state is not the flow's: the
	// callback was forged, or belongs to another login.
	ErrStateMismatch = errors.New("oidc: callback state does not match the login flow")
	// ErrNonceMismatch means the ID token was not issued for this login.
	ErrNonceMismatch = errors.New("oidc: ID token nonce does not match the login flow")
	// ErrExchange means the provider did not redeem the authorization code.
	ErrExchange = errors.New("oidc: code exchange failed")
	// ErrToken means the ID token is missing or failed verification.
	ErrToken = errors.New("oidc: invalid ID token")
	// ErrDomainNotAllowed means Config.AllowedDomains refused the user.
	ErrDomainNotAllowed = errors.New("oidc: email domain not allowed")
)

// ProviderError is the provider's refusal, sent to the callback as
// error=... (RFC 6749 section 4.1.2.1), e.g. access_denied when the user
// declined. Code and Description are reduced to printable ASCII and
// bounded in length, but they come from the request: escape them.
type ProviderError struct {
	Code        string
	Description string
}

func (e *ProviderError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("oidc: provider refused the login: %s", e.Code)
	}
	return fmt.Sprintf("oidc: provider refused the login: %s: %s", e.Code, e.Description)
}

// Identity is who the provider says the user is. (Issuer, Subject) is the
// stable key; the other fields are hints, refreshed at each login.
type Identity struct {
	Issuer        string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string   // "name" claim
	Username      string   // "preferred_username" claim
	Groups        []string // Config.GroupsClaim; nil when absent
}

// Provider logs users in through one OpenID Connect provider. It is safe
// for concurrent use.
type Provider struct {
	cfg      Config
	redirect *url.URL
	oauth    *oauth2.Config
	verifier *gooidc.IDTokenVerifier
	box      *auth.Box
	flowAD   []byte
}

// New checks cfg, fetches the provider's discovery document (bounded by
// ctx and 15 seconds), and returns a Provider whose flows are sealed under
// flowKey (FlowKeyLen bytes). Errors name the Config field at fault as a
// *ConfigError.
func New(ctx context.Context, cfg Config, flowKey []byte) (*Provider, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if len(flowKey) != FlowKeyLen {
		return nil, fmt.Errorf("oidc: flow key is %d bytes, want %d", len(flowKey), FlowKeyLen)
	}
	box, err := auth.NewBox(flowKey)
	if err != nil {
		return nil, fmt.Errorf("oidc: flow key: %w", err)
	}
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil {
		return nil, fieldError("RedirectURL", "%v", err) // already checked by normalize
	}

	dctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	op, err := gooidc.NewProvider(gooidc.ClientContext(dctx, cfg.HTTPClient), cfg.Issuer)
	if err != nil {
		var mismatch *gooidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, fieldError("Issuer", "%q does not match the issuer %q in the provider's discovery document; copy it exactly, trailing slash included", cfg.Issuer, mismatch.Discovered)
		}
		return nil, fmt.Errorf("oidc: discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		PKCEMethods []string `json:"code_challenge_methods_supported"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("oidc: discovery at %s: %w", cfg.Issuer, err)
	}
	// Providers that do not advertise PKCE methods often support S256
	// anyway; one that lists methods without it would ignore our challenge.
	if len(meta.PKCEMethods) > 0 && !slices.Contains(meta.PKCEMethods, "S256") {
		return nil, fmt.Errorf("oidc: provider %s does not support PKCE S256 (it offers %v); enable it for the client", cfg.Issuer, meta.PKCEMethods)
	}
	endpoint := op.Endpoint()
	if endpoint.AuthURL == "" || endpoint.TokenURL == "" {
		return nil, fmt.Errorf("oidc: discovery at %s: no authorization_endpoint or token_endpoint", cfg.Issuer)
	}
	// Fix the client authentication method rather than let oauth2 guess by
	// retrying, which would present a one-time code twice.
	switch {
	case len(meta.AuthMethods) == 0 || slices.Contains(meta.AuthMethods, "client_secret_basic"):
		endpoint.AuthStyle = oauth2.AuthStyleInHeader // the spec's default
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	default:
		return nil, fmt.Errorf("oidc: provider %s accepts neither client_secret_basic nor client_secret_post (it offers %v)", cfg.Issuer, meta.AuthMethods)
	}

	return &Provider{
		cfg:      cfg,
		redirect: redirect,
		oauth: &oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: string(cfg.ClientSecret.Expose()),
			Endpoint:     endpoint,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       cfg.Scopes,
		},
		verifier: op.Verifier(&gooidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		box:      box,
		// A flow sealed for one provider does not open at another.
		flowAD: []byte("holdfast oidc flow v1\x00" + cfg.Issuer + "\x00" + cfg.ClientID),
	}, nil
}

func (p *Provider) now() time.Time { return p.cfg.Now() }

// Begin starts a login. The server sets the cookie made by
// FlowCookie(flowValue) and redirects the browser to authURL (302).
func (p *Provider) Begin() (authURL, flowValue string, err error) {
	f := flow{
		State:    rand.Text(),
		Nonce:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		Expires:  p.now().Add(FlowLifetime).Unix(),
	}
	flowValue, err = p.sealFlow(f)
	if err != nil {
		return "", "", err
	}
	authURL = p.oauth.AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return authURL, flowValue, nil
}

// Finish completes a login from the flow cookie's value and the query of
// the request to RedirectURL. It returns the verified identity; errors
// match the Err* values or are a *ProviderError.
func (p *Provider) Finish(ctx context.Context, flowValue string, callback url.Values) (Identity, error) {
	f, err := p.openFlow(flowValue)
	if err != nil {
		return Identity{}, err
	}
	if code := callback.Get("error"); code != "" {
		// An error response carries the state too; if it does not match,
		// the refusal is not about this login.
		if s := callback.Get("state"); s != "" && !equalSecret(s, f.State) {
			return Identity{}, ErrStateMismatch
		}
		return Identity{}, &ProviderError{
			Code:        printable(code, 64),
			Description: printable(callback.Get("error_description"), 256),
		}
	}
	if !equalSecret(callback.Get("state"), f.State) {
		return Identity{}, ErrStateMismatch
	}
	code := callback.Get("code")
	if code == "" {
		return Identity{}, fmt.Errorf("%w: the callback carries no code", ErrExchange)
	}

	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	ctx = gooidc.ClientContext(ctx, p.cfg.HTTPClient)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Identity{}, exchangeError(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: the token response has no id_token", ErrToken)
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if !equalSecret(idt.Nonce, f.Nonce) {
		return Identity{}, ErrNonceMismatch
	}
	return p.identity(idt)
}

// exchangeError keeps the provider's error code and description but not
// the response body, which oauth2.RetrieveError would print.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("%w: %w", ErrExchange, err)
	}
	msg := "the token endpoint refused"
	if re.Response != nil {
		msg = fmt.Sprintf("the token endpoint answered %d", re.Response.StatusCode)
	}
	if c := printable(re.ErrorCode, 64); c != "" {
		msg += ": " + c
		if d := printable(re.ErrorDescription, 256); d != "" {
			msg += ": " + d
		}
	}
	return fmt.Errorf("%w: %s", ErrExchange, msg)
}

// identity reads the claims of a verified ID token.
func (p *Provider) identity(idt *gooidc.IDToken) (Identity, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %w", ErrToken, err)
	}
	str := func(name string) (string, error) {
		var s string
		if v, ok := claims[name]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, &s); err != nil {
				return "", fmt.Errorf("%w: claim %q is not a string", ErrToken, name)
			}
		}
		return s, nil
	}
	id := Identity{Issuer: idt.Issuer, Subject: idt.Subject}
	if id.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no sub claim", ErrToken)
	}
	// With several audiences, or an azp at all, azp must name us (OIDC
	// Core 3.1.3.7, steps 4 and 5).
	azp, err := str("azp")
	if err != nil {
		return Identity{}, err
	}
	if (azp != "" || len(idt.Audience) > 1) && azp != p.cfg.ClientID {
		return Identity{}, fmt.Errorf("%w: authorized party %q is not this client", ErrToken, azp)
	}
	for name, dst := range map[string]*string{"email": &id.Email, "name": &id.Name, "preferred_username": &id.Username} {
		if *dst, err = str(name); err != nil {
			return Identity{}, err
		}
	}
	if id.EmailVerified, err = boolClaim(claims["email_verified"]); err != nil {
		return Identity{}, err
	}
	if id.Groups, err = groupsClaim(claims[p.cfg.GroupsClaim]); err != nil {
		return Identity{}, fmt.Errorf("%w: claim %q (Config.GroupsClaim): %w", ErrToken, p.cfg.GroupsClaim, err)
	}
	if err := p.checkDomain(id); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// boolClaim reads a boolean, also in the string form some providers send.
func boolClaim(v json.RawMessage) (bool, error) {
	switch string(v) {
	case "", "null", "false", `"false"`:
		return false, nil
	case "true", `"true"`:
		return true, nil
	}
	return false, fmt.Errorf("%w: claim \"email_verified\" is not a boolean", ErrToken)
}

// groupsClaim reads a list of strings, or a single string.
func groupsClaim(v json.RawMessage) ([]string, error) {
	if len(v) == 0 || string(v) == "null" {
		return nil, nil
	}
	var groups []string
	if err := json.Unmarshal(v, &groups); err == nil {
		return groups, nil
	}
	var one string
	if err := json.Unmarshal(v, &one); err != nil {
		return nil, errors.New("not a list of strings")
	}
	return []string{one}, nil
}

func (p *Provider) checkDomain(id Identity) error {
	if len(p.cfg.AllowedDomains) == 0 {
		return nil
	}
	if !id.EmailVerified {
		return fmt.Errorf("%w: the provider has not verified the user's email", ErrDomainNotAllowed)
	}
	at := strings.LastIndexByte(id.Email, '@')
	if at < 0 {
		return fmt.Errorf("%w: the user has no email address", ErrDomainNotAllowed)
	}
	domain := strings.ToLower(id.Email[at+1:])
	if !slices.Contains(p.cfg.AllowedDomains, domain) {
		return fmt.Errorf("%w: %q", ErrDomainNotAllowed, printable(domain, 256))
	}
	return nil
}

// printable keeps the characters RFC 6749 allows in error and
// error_description (printable ASCII), at most max of them, so provider
// text cannot inject lines or markup-hiding control characters.
func printable(s string, maxLen int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == maxLen {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}
