package oidc

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/auth"
)

// Config describes one OpenID Connect provider and the control plane's
// registration with it as a confidential client.
type Config struct {
	// Issuer is the provider's issuer URL exactly as its discovery document
	// states it, trailing slash included: e.g.
	// "https://authentik.example.com/application/o/holdfast/" or
	// "https://keycloak.example.com/realms/main".
	Issuer string
	// ClientID and ClientSecret are the client's credentials at the provider.
	ClientID     string
	ClientSecret auth.Secret
	// RedirectURL is the callback registered with the provider, e.g.
	// "https://holdfast.example.com/v1/auth/oidc/callback".
	RedirectURL string
	// Scopes are requested at login; "openid" is always added. Empty means
	// openid, email, profile.
	Scopes []string
	// GroupsClaim names the ID-token claim listing the user's groups.
	// Empty means "groups".
	GroupsClaim string
	// AllowedDomains, if not empty, admits only users whose email is
	// verified and whose domain is one of these (case-insensitive, exact:
	// "example.com" does not admit "sub.example.com").
	AllowedDomains []string

	// HTTPClient makes every call to the provider. Nil means a client with
	// a 15-second timeout.
	HTTPClient *http.Client
	// Now is the clock for flow and ID-token expiry. Nil means time.Now.
	Now func() time.Time
}

// ConfigError names the Config field that is wrong and why.
type ConfigError struct {
	Field   string // e.g. "RedirectURL"
	Problem string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("oidc config: %s: %s", e.Field, e.Problem)
}

func fieldError(field, format string, args ...any) error {
	return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// normalize returns cfg with defaults filled in, or the first wrong field.
func (cfg Config) normalize() (Config, error) {
	if err := checkURL("Issuer", cfg.Issuer); err != nil {
		return cfg, err
	}
	if strings.TrimSpace(cfg.ClientID) == "" {
		return cfg, fieldError("ClientID", "required")
	}
	if cfg.ClientSecret.IsZero() {
		return cfg, fieldError("ClientSecret", "required (register Holdfast as a confidential client)")
	}
	if err := checkURL("RedirectURL", cfg.RedirectURL); err != nil {
		return cfg, err
	}

	scopes := []string{"openid"}
	in := cfg.Scopes
	if len(in) == 0 {
		in = []string{"email", "profile"}
	}
	for i, s := range in {
		if s == "" || strings.ContainsFunc(s, isSpaceOrControl) {
			return cfg, fieldError(fmt.Sprintf("Scopes[%d]", i), "%q is not a scope name", s)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	cfg.Scopes = scopes

	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}

	domains := make([]string, 0, len(cfg.AllowedDomains))
	for i, d := range cfg.AllowedDomains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || strings.Contains(d, "@") || strings.ContainsFunc(d, isSpaceOrControl) {
			return cfg, fieldError(fmt.Sprintf("AllowedDomains[%d]", i), "%q is not a domain (write e.g. \"example.com\")", cfg.AllowedDomains[i])
		}
		domains = append(domains, d)
	}
	cfg.AllowedDomains = domains

	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: providerTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// checkURL accepts an absolute https URL, or http to a loopback host for
// development: codes and tokens must not cross a network in clear.
func checkURL(field, raw string) error {
	if raw == "" {
		return fieldError(field, "required")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fieldError(field, "%q is not an absolute https URL", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fieldError(field, "%q uses plain http; use https (http is allowed only for localhost)", raw)
	}
	if u.User != nil || u.Fragment != "" {
		return fieldError(field, "%q must not contain user info or a #fragment", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }
