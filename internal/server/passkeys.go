package server

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/tenant"
)

// Passkeys: WebAuthn through go-webauthn, which makes the options and
// verifies the browser's answers. What is Holdfast's own is kept here:
// the relying party is the public URL, ceremonies live in the control
// database and are answered once, a login by passkey ends like any other
// (grant), and its failures are failed logins under the same limiter.

const (
	// ceremonyTTL is how long a challenge may be answered.
	ceremonyTTL = 5 * time.Minute
	// Anyone may ask for a login challenge, so the ceremonies under way
	// are bounded: in all, and from one address (an address filling
	// its share cannot lock the others out).
	maxCeremonies          = 10000
	maxCeremoniesPerSource = 100
)

var errNoPasskeys = problem(http.StatusConflict, "passkeys-unavailable",
	"this server has no public URL, which passkeys are bound to: start it with --public-url https://HOST:PORT")

// newWebAuthn makes the relying party of publicURL, the origin browsers
// use: its host name is the RP ID, the origin the only one accepted.
func newWebAuthn(publicURL, cloud string) (*webauthn.WebAuthn, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("public URL %q: want the origin browsers use, https://HOST[:PORT] (no path)", publicURL)
	}
	host := strings.ToLower(u.Hostname())
	// Browsers offer WebAuthn only to secure contexts: https, and
	// http on localhost (a server behind a local TLS-less test harness).
	localhost := host == "localhost" || strings.HasSuffix(host, ".localhost")
	if u.Scheme != "https" && (u.Scheme != "http" || !localhost) {
		return nil, fmt.Errorf("public URL %q: want https://HOST[:PORT] (browsers offer passkeys to https origins, and to http only on localhost)", publicURL)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil, fmt.Errorf("public URL %q: passkeys are bound to a host name and an IP address is none (WebAuthn RP ID); use a DNS name, or localhost on this machine", publicURL)
	}
	return webauthn.New(&webauthn.Config{
		RPID:                  host,
		RPDisplayName:         "Holdfast " + cloud,
		RPOrigins:             []string{u.Scheme + "://" + strings.ToLower(u.Host)},
		AttestationPreference: protocol.PreferNoAttestation,
		// What browsers are told to wait; the server holds a ceremony
		// as long (and enforces it by its own clock, not go-webauthn's).
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
			Registration: webauthn.TimeoutConfig{Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
		},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationPreferred,
		},
	})
}

// DefaultPublicURL is the public URL of a server listening on listen
// when none is given: https://localhost with its port, which browsers on
// the same machine use (an address would not do for passkeys).
func DefaultPublicURL(listen string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if port == "443" {
		return "https://localhost", nil
	}
	return "https://localhost:" + port, nil
}

// webauthnHandleKey derives the key of user handles from the master key.
func webauthnHandleKey(master []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, "holdfast webauthn user handles v1", 32)
}

// passkeyUser is a user as go-webauthn sees one. The user handle stored
// in authenticators is a keyed hash of the user's id: it names no one to
// whoever reads the authenticator, is the same for all of a user's
// passkeys (so that an authenticator keeps one per user), and needs no
// column (ids are never reused).
type passkeyUser struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

var _ webauthn.User = passkeyUser{}

func (u passkeyUser) WebAuthnID() []byte                         { return u.handle }
func (u passkeyUser) WebAuthnName() string                       { return u.name }
func (u passkeyUser) WebAuthnDisplayName() string                { return u.name }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (s *Server) userHandle(id int64) []byte {
	m := hmac.New(sha256.New, s.handleKey)
	m.Write([]byte("user:" + itoa(id)))
	return m.Sum(nil)
}

func (s *Server) passkeyUser(u tenant.UserRecord, keys []tenant.PasskeyRecord) passkeyUser {
	p := passkeyUser{handle: s.userHandle(u.ID), name: u.Name}
	for _, k := range keys {
		c := webauthn.Credential{
			ID: k.CredentialID, PublicKey: k.PublicKey, AttestationFormat: k.AttestationFormat,
			Flags:         webauthn.NewCredentialFlags(protocol.AuthenticatorFlags(k.Flags)),
			Authenticator: webauthn.Authenticator{AAGUID: k.AAGUID, SignCount: k.SignCount},
		}
		for _, t := range k.Transports {
			c.Transport = append(c.Transport, protocol.AuthenticatorTransport(t))
		}
		p.creds = append(p.creds, c)
	}
	return p
}

// newCeremony stores a ceremony's session data and returns its id.
func (s *Server) newCeremony(q *request, kind string, userID int64, named bool, sd *webauthn.SessionData) (string, error) {
	data, err := json.Marshal(sd)
	if err != nil {
		return "", err
	}
	now := s.now()
	c := tenant.Ceremony{ID: rand.Text(), Kind: kind, UserID: userID, Named: named, Source: source(q.r), Data: data, Expires: now.Add(ceremonyTTL)}
	err = q.do(s, func(tx *tenant.Tx) error {
		return tx.CreateCeremony(c, now, tenant.CeremonyLimits{Total: maxCeremonies, PerSource: maxCeremoniesPerSource})
	})
	if errors.Is(err, tenant.ErrTooMany) {
		q.w.Header().Set("Retry-After", itoa(int64(ceremonyTTL/time.Second)))
		return "", problem(http.StatusTooManyRequests, "too-many-ceremonies", "too many passkey ceremonies are under way; try again in a few minutes")
	}
	return c.ID, err
}

// takeCeremony spends a ceremony: committed whatever follows. ok is
// false for one unknown, spent, expired or of another kind.
func (s *Server) takeCeremony(q *request, id, kind string) (c tenant.Ceremony, sd webauthn.SessionData, ok bool, err error) {
	err = q.do(s, func(tx *tenant.Tx) error {
		var err error
		c, ok, err = tx.TakeCeremony(id, kind, s.now())
		return err
	})
	if err != nil || !ok {
		return c, sd, false, err
	}
	if err := json.Unmarshal(c.Data, &sd); err != nil {
		return c, sd, false, fmt.Errorf("ceremony %s: %w", id, err)
	}
	return c, sd, true, nil
}

// webauthnDetail is what go-webauthn says was wrong, for the client
// (details) and the log (debug information).
func (s *Server) webauthnDetail(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		s.log.Info("webauthn refused", "type", pe.Type, "details", pe.Details, "debug", pe.DevInfo)
		return pe.Details
	}
	s.log.Info("webauthn refused", "err", err.Error())
	return "not a valid WebAuthn credential"
}

func toPasskey(k tenant.PasskeyRecord) api.Passkey { return k.Passkey }

// Registration.

func (s *Server) beginPasskeyRegistration(q *request) error {
	if s.wa == nil {
		return errNoPasskeys
	}
	u := q.caller.user
	var keys []tenant.PasskeyRecord
	if err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		keys, err = tx.Passkeys(u.ID)
		return err
	}); err != nil {
		return err
	}
	user := s.passkeyUser(u, keys)
	var exclude []protocol.CredentialDescriptor
	for _, c := range user.creds {
		exclude = append(exclude, c.Descriptor())
	}
	creation, sd, err := s.wa.BeginRegistration(user, webauthn.WithExclusions(exclude))
	if err != nil {
		return err
	}
	id, err := s.newCeremony(q, tenant.CeremonyRegistration, u.ID, false, sd)
	if err != nil {
		return err
	}
	opts, err := json.Marshal(creation)
	if err != nil {
		return err
	}
	return q.ok(api.PasskeyRegistration{Ceremony: id, Options: opts})
}

var errCeremony = problem(http.StatusConflict, "ceremony", "the ceremony is unknown, answered already or expired (they last five minutes): start again")

func (s *Server) createPasskey(q *request) error {
	if s.wa == nil {
		return errNoPasskeys
	}
	var in api.PasskeyCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	u := q.caller.user
	c, sd, ok, err := s.takeCeremony(q, in.Ceremony, tenant.CeremonyRegistration)
	if err != nil {
		return err
	}
	if !ok || c.UserID != u.ID {
		return errCeremony
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(in.Credential)
	if err != nil {
		return badField("credential", s.webauthnDetail(err))
	}
	cred, err := s.wa.CreateCredential(s.passkeyUser(u, nil), sd, parsed)
	if err != nil {
		return badField("credential", s.webauthnDetail(err))
	}
	rec := tenant.PasskeyRecord{
		UserID: u.ID, CredentialID: cred.ID, PublicKey: cred.PublicKey, SignCount: cred.Authenticator.SignCount,
		Flags: byte(cred.Flags.ProtocolValue()), AAGUID: cred.Authenticator.AAGUID, AttestationFormat: cred.AttestationFormat,
		Passkey: api.Passkey{ID: "pk-" + strings.ToLower(rand.Text()), Name: in.Name},
	}
	for _, t := range cred.Transport {
		rec.Transports = append(rec.Transports, string(t))
	}
	err = q.do(s, func(tx *tenant.Tx) error {
		var err error
		rec, err = tx.CreatePasskey(rec)
		return err
	})
	if errors.Is(err, tenant.ErrExists) {
		return problem(http.StatusConflict, "exists", "you have a passkey of that name, or this authenticator is registered already")
	}
	if err != nil {
		return err
	}
	q.audit = map[string]string{"id": rec.ID, "name": rec.Name} // (the audit log refuses keys named like "passkey": see audit.checkDetail)
	return q.reply(http.StatusCreated, toPasskey(rec))
}

func (s *Server) listPasskeys(q *request) error {
	items := []api.Passkey{}
	err := q.do(s, func(tx *tenant.Tx) error {
		keys, err := tx.Passkeys(q.caller.user.ID)
		for _, k := range keys {
			items = append(items, toPasskey(k))
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(api.Page[api.Passkey]{Items: items})
}

// deletePasskey removes one of the caller's passkeys. Removing the last
// second factor is allowed, as the user chooses, and the audit entry
// says that it was.
func (s *Server) deletePasskey(q *request) error {
	id := q.r.PathValue("passkey")
	u := q.caller.user
	left := 0
	err := q.do(s, func(tx *tenant.Tx) error {
		if err := tx.DeletePasskey(u.ID, id); err != nil {
			return err
		}
		var err error
		left, err = tx.CountPasskeys(u.ID)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("passkey", id)
	}
	if err != nil {
		return err
	}
	var factors []string
	if u.TOTP {
		factors = append(factors, "totp")
	}
	if left > 0 {
		factors = append(factors, "passkey")
	}
	q.audit = map[string]string{"id": id, "second_factors_left": strings.Join(factors, ",")}
	if factors == nil {
		q.audit["second_factors_left"] = "none"
	}
	return q.reply(http.StatusNoContent, nil)
}

// Logging in.

func (s *Server) passkeyChallenge(q *request) error {
	if s.wa == nil {
		return errNoPasskeys
	}
	var in api.PasskeyChallengeRequest
	if len(q.body) > 0 {
		if err := q.decode(&in); err != nil {
			return err
		}
	}
	// A named user is looked up but the answer is the same either way:
	// the options list no credentials (they are discoverable), so the
	// challenge tells nobody whether the name is an account or which
	// passkeys it has.
	var userID int64
	if in.User != "" {
		err := q.do(s, func(tx *tenant.Tx) error {
			u, err := tx.User(in.User)
			userID = u.ID
			return err
		})
		if err != nil && !errors.Is(err, tenant.ErrNotFound) {
			return err
		}
	}
	assertion, sd, err := s.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return err
	}
	id, err := s.newCeremony(q, tenant.CeremonyLogin, userID, in.User != "", sd)
	if err != nil {
		return err
	}
	opts, err := json.Marshal(assertion)
	if err != nil {
		return err
	}
	return q.ok(api.PasskeyChallenge{Ceremony: id, Options: opts})
}

// assertion is a browser's answer to a login challenge, read, with the
// passkey it names and that passkey's user when there is one.
type assertion struct {
	parsed *protocol.ParsedCredentialAssertionData
	key    tenant.PasskeyRecord
	user   tenant.UserRecord
	found  bool
}

// readAssertion parses an answer and finds whose passkey it names;
// reason says why it cannot succeed (then found is false).
func (s *Server) readAssertion(q *request, raw json.RawMessage) (a assertion, reason string, err error) {
	if a.parsed, err = protocol.ParseCredentialRequestResponseBytes(raw); err != nil {
		return a, "passkey: " + s.webauthnDetail(err), nil
	}
	err = q.do(s, func(tx *tenant.Tx) error {
		var err error
		if a.key, err = tx.PasskeyByCredential(a.parsed.RawID); err != nil {
			return err
		}
		a.user, err = tx.UserByID(a.key.UserID)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return a, "passkey unknown", nil
	}
	a.found = err == nil
	return a, "", err
}

// account is whom a passkey login counts against in the limiter: the
// passkey's user, or for a passkey of nobody the credential id it named.
func (a assertion) account() string {
	if a.found {
		return a.user.Name
	}
	if a.parsed != nil {
		return "passkey " + base64.RawURLEncoding.EncodeToString(a.parsed.RawID)
	}
	return "passkey"
}

// checkAssertion spends the ceremony and verifies the answer with
// go-webauthn: the challenge, origin, RP ID, signature, user handle and
// counter. owner, when not nil, is the user who must hold the passkey
// (the second factor of a password login); uv requires the
// authenticator to have verified its user (a passkey as the only
// factor). reason says why the answer is refused; err is the server's.
func (s *Server) checkAssertion(q *request, a assertion, ceremony string, owner *tenant.UserRecord, uv bool) (reason string, err error) {
	c, sd, ok, err := s.takeCeremony(q, ceremony, tenant.CeremonyLogin)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "passkey ceremony unknown, answered or expired", nil
	case !a.found:
		return "passkey unknown", nil
	case c.Named && c.UserID != a.user.ID, owner != nil && owner.ID != a.user.ID:
		return "passkey of another user", nil
	}
	user := s.passkeyUser(a.user, []tenant.PasskeyRecord{a.key})
	_, cred, err := s.wa.ValidatePasskeyLogin(func(_, _ []byte) (webauthn.User, error) { return user, nil }, sd, a.parsed)
	if err != nil {
		return "passkey: " + s.webauthnDetail(err), nil
	}
	if cred.Authenticator.CloneWarning {
		// The counter went back: two authenticators hold this key.
		// Whichever is the copy, neither is trusted with the account.
		return "passkey signature counter went back (a cloned authenticator?)", nil
	}
	if uv && !a.parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return "passkey without user verification cannot be the only factor", nil
	}
	err = q.do(s, func(tx *tenant.Tx) error {
		return tx.UsePasskey(a.key.ID, cred.Authenticator.SignCount, byte(cred.Flags.ProtocolValue()), s.now())
	})
	return "", err
}

// passkeyLogin logs in with a passkey alone. It answers and audits like
// a password login: one 401 for every failure, with the reason in the
// audit log, counted by the same limiter, for the passkey's user.
func (s *Server) passkeyLogin(q *request) error {
	if s.wa == nil {
		return errNoPasskeys
	}
	var in api.PasskeyLogin
	if err := q.decode(&in); err != nil {
		return err
	}
	r := q.r
	if in.Cookie {
		if err := checkCSRF(r); err != nil {
			return err
		}
	}
	a, reason, err := s.readAssertion(q, in.Credential)
	if err != nil {
		return err
	}
	actor := a.user.Name
	if !a.found {
		actor = s.sess.unknownUser(a.account())
	}
	if err := s.sess.admit(r.Context(), a.account(), source(r)); err != nil {
		var ra *retryAfter
		if errors.As(err, &ra) {
			s.auditLogin(r, "login", actor, "denied: "+ra.reason, map[string]string{"method": "passkey"})
			return ra.answer(q.w)
		}
		return err
	}
	if reason == "" {
		if reason, err = s.checkAssertion(q, a, in.Ceremony, nil, true); err != nil {
			return err
		}
	} else {
		// Spend the ceremony all the same: a challenge is answered once.
		if _, _, _, err := s.takeCeremony(q, in.Ceremony, tenant.CeremonyLogin); err != nil {
			return err
		}
	}
	if reason != "" {
		s.auditLogin(r, "login", actor, "denied: "+reason, map[string]string{"method": "passkey"})
		return problem(http.StatusUnauthorized, "login-failed", "the passkey was not accepted")
	}
	return s.grant(q, a.user, []string{"passkey"}, in.Cookie)
}

// passkeyFactor checks a passkey given as the second factor of u's
// password login; reason says why it is refused.
func (s *Server) passkeyFactor(q *request, u tenant.UserRecord, in *api.PasskeyAssertion) (reason string, err error) {
	if s.wa == nil {
		return "passkeys unavailable (no public URL)", nil
	}
	a, reason, err := s.readAssertion(q, in.Credential)
	if err != nil || reason != "" {
		if err == nil {
			_, _, _, err = s.takeCeremony(q, in.Ceremony, tenant.CeremonyLogin)
		}
		return reason, err
	}
	return s.checkAssertion(q, a, in.Ceremony, &u, false)
}
