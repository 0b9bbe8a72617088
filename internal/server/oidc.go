package server

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"

	"github.com/holdfast/holdfast/internal/auth/oidc"
	"github.com/holdfast/holdfast/internal/tenant"
)

// EnableOIDC turns on login through an OpenID Connect provider. The flow
// cookie's key is derived from the master key, so every replica sharing
// the master key can finish a login another one began.
func (s *Server) EnableOIDC(ctx context.Context, cfg oidc.Config) error {
	key, err := hkdf.Key(sha256.New, s.masterKey, nil, "holdfast oidc flow v1", oidc.FlowKeyLen)
	if err != nil {
		return err
	}
	p, err := oidc.New(ctx, cfg, key)
	if err != nil {
		return err
	}
	s.oidc = p
	return nil
}

func (s *Server) oidcLogin(q *request) error {
	if s.oidc == nil {
		return problem(http.StatusNotFound, "oidc-disabled", "this server has no OpenID Connect login configured")
	}
	u, flow, err := s.oidc.Begin()
	if err != nil {
		return err
	}
	http.SetCookie(q.w, s.oidc.FlowCookie(flow))
	q.w.Header().Set("Location", u)
	return q.reply(http.StatusFound, nil)
}

// oidcCallback finishes a login and answers the session as JSON. Accounts
// are linked by (issuer, subject); the first login links to the one local
// user with the same verified email. Operators are never linked: their
// way in does not depend on an outside provider.
func (s *Server) oidcCallback(q *request) error {
	if s.oidc == nil {
		return problem(http.StatusNotFound, "oidc-disabled", "this server has no OpenID Connect login configured")
	}
	http.SetCookie(q.w, s.oidc.FlowCookie(""))
	var flow string
	if c, err := q.r.Cookie(oidc.FlowCookieName); err == nil {
		flow = c.Value
	}
	id, err := s.oidc.Finish(q.r.Context(), flow, q.r.URL.Query())
	if err != nil {
		s.auditLogin(q.r, "login.oidc", "unknown", "denied: "+oidcReason(err), nil)
		var pe *oidc.ProviderError
		switch {
		case errors.As(err, &pe), errors.Is(err, oidc.ErrDomainNotAllowed):
			return problem(http.StatusForbidden, "oidc-refused", "the identity provider refused the login")
		case errors.Is(err, oidc.ErrFlowInvalid), errors.Is(err, oidc.ErrFlowExpired), errors.Is(err, oidc.ErrStateMismatch):
			return problem(http.StatusBadRequest, "oidc-flow", "the login expired or was not started here; start again")
		case errors.Is(err, oidc.ErrExchange):
			return problem(http.StatusBadGateway, "oidc-exchange", "the identity provider did not redeem the code")
		default:
			return problem(http.StatusUnauthorized, "oidc-token", "the identity provider's token was not valid")
		}
	}
	var u tenant.UserRecord
	err = q.do(s, func(tx *tenant.Tx) error {
		var err error
		u, err = tx.UserByOIDC(id.Issuer, id.Subject)
		if !errors.Is(err, tenant.ErrNotFound) {
			return err
		}
		if !id.EmailVerified || id.Email == "" {
			return tenant.ErrNotFound
		}
		us, err := tx.Users("", 100000, 0)
		if err != nil {
			return err
		}
		var match []tenant.UserRecord
		for _, c := range us {
			if strings.EqualFold(c.Email, id.Email) {
				match = append(match, c)
			}
		}
		if len(match) != 1 || match[0].Operator || match[0].OIDCSubject != "" {
			return tenant.ErrNotFound
		}
		u = match[0]
		return tx.LinkOIDC(u.ID, id.Issuer, id.Subject)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		s.auditLogin(q.r, "login.oidc", id.Subject, "denied: no linked account", map[string]string{"issuer": id.Issuer})
		return problem(http.StatusForbidden, "oidc-unlinked", "no account is linked to this identity; ask an operator")
	}
	if err != nil {
		return err
	}
	tok, err := s.sess.issue(q.r.Context(), u.ID, []string{"oidc"})
	if err != nil {
		return err
	}
	s.auditLogin(q.r, "login.oidc", u.Name, "ok", map[string]string{"issuer": id.Issuer})
	return q.ok(tok)
}

func oidcReason(err error) string {
	for _, e := range []error{oidc.ErrFlowInvalid, oidc.ErrFlowExpired, oidc.ErrStateMismatch, oidc.ErrNonceMismatch, oidc.ErrExchange, oidc.ErrToken, oidc.ErrDomainNotAllowed} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "provider refused"
}
