package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/holdfast/holdfast/api"
	hfclient "github.com/holdfast/holdfast/client"
	"github.com/holdfast/holdfast/internal/auth"
)

// testOrigin is the public URL the passkey tests' server is given: the
// origin a browser would report, whatever address the test listens on.
const testOrigin = "https://holdfast.test:8443"

// authenticator is a software FIDO2 authenticator with resident ECDSA
// P-256 keys, attesting with "none", and the browser around it: it
// answers the server's options the way navigator.credentials.create and
// .get do, as the PublicKeyCredential JSON (toJSON) the portal sends.
type authenticator struct {
	t      *testing.T
	origin string // what the "browser" reports in clientDataJSON
	uv     bool   // whether it verifies its user (PIN, biometrics)
}

// softKey is one resident credential.
type softKey struct {
	id     []byte
	priv   *ecdsa.PrivateKey
	rpID   string
	handle []byte // the user handle the RP gave at registration
	count  uint32
}

const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
)

// publicKeyOptions is what the authenticator reads of either kind of
// options: {"publicKey": {...}}.
type publicKeyOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		ExcludeCredentials []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
		AllowCredentials []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
		AuthenticatorSelection struct {
			ResidentKey      string `json:"residentKey"`
			UserVerification string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		UserVerification string `json:"userVerification"`
	} `json:"publicKey"`
}

func (a *authenticator) options(raw json.RawMessage) publicKeyOptions {
	var o publicKeyOptions
	if err := json.Unmarshal(raw, &o); err != nil {
		a.t.Fatalf("options %s: %v", raw, err)
	}
	return o
}

var b64u = base64.RawURLEncoding

func (a *authenticator) flags() byte {
	f := byte(flagUP)
	if a.uv {
		f |= flagUV
	}
	return f
}

func (a *authenticator) clientData(typ, challenge string) []byte {
	b, err := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.origin, "crossOrigin": false})
	if err != nil {
		a.t.Fatal(err)
	}
	return b
}

// create makes a resident key for the options' RP and user.
func (a *authenticator) create(raw json.RawMessage) (json.RawMessage, *softKey) {
	a.t.Helper()
	o := a.options(raw).PublicKey
	handle, err := b64u.DecodeString(o.User.ID)
	if err != nil {
		a.t.Fatalf("user id %q: %v", o.User.ID, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	k := &softKey{id: make([]byte, 32), priv: priv, rpID: o.RP.ID, handle: handle, count: 1}
	if _, err := rand.Read(k.id); err != nil {
		a.t.Fatal(err)
	}
	// The public key as COSE_Key: kty EC2, alg ES256, crv P-256, x, y.
	pub, err := priv.PublicKey.Bytes() // uncompressed point: 0x04 | x | y
	if err != nil {
		a.t.Fatal(err)
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		a.t.Fatal(err)
	}
	cose, err := em.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:]})
	if err != nil {
		a.t.Fatal(err)
	}
	rpHash := sha256.Sum256([]byte(k.rpID))
	auth := append(rpHash[:], a.flags()|flagAT)
	auth = binary.BigEndian.AppendUint32(auth, k.count)
	auth = append(auth, make([]byte, 16)...) // AAGUID: none
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(k.id)))
	auth = append(auth, k.id...)
	auth = append(auth, cose...)
	att, err := em.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		a.t.Fatal(err)
	}
	cred, err := json.Marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(a.clientData("webauthn.create", o.Challenge)),
			"attestationObject": b64u.EncodeToString(att),
			"transports":        []string{"internal"},
		},
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return cred, k
}

// get signs the options' challenge with k, its counter advanced by step
// (a cloned authenticator's copy lags behind).
func (a *authenticator) get(raw json.RawMessage, k *softKey, step int) json.RawMessage {
	a.t.Helper()
	o := a.options(raw).PublicKey
	k.count = uint32(int(k.count) + step)
	rpHash := sha256.Sum256([]byte(o.RPID))
	auth := append(rpHash[:], a.flags())
	auth = binary.BigEndian.AppendUint32(auth, k.count)
	cd := a.clientData("webauthn.get", o.Challenge)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(slices.Clone(auth), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		a.t.Fatal(err)
	}
	cred, err := json.Marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(cd),
			"authenticatorData": b64u.EncodeToString(auth),
			"signature":         b64u.EncodeToString(sig),
			"userHandle":        b64u.EncodeToString(k.handle),
		},
	})
	if err != nil {
		a.t.Fatal(err)
	}
	return cred
}

func newPasskeyEnv(t *testing.T) (*env, *authenticator) {
	e := newEnv(t, Config{PublicURL: testOrigin})
	return e, &authenticator{t: t, origin: testOrigin, uv: true}
}

// register registers a passkey for c named name.
func (e *env) registerPasskey(c cred, a *authenticator, name string) (api.Passkey, *softKey) {
	e.t.Helper()
	var reg api.PasskeyRegistration
	e.must(c, http.StatusOK, "POST", "/v1/me/passkeys/registration", nil, &reg)
	credential, k := a.create(reg.Options)
	var pk api.Passkey
	e.must(c, http.StatusCreated, "POST", "/v1/me/passkeys", api.PasskeyCreate{Ceremony: reg.Ceremony, Name: name, Credential: credential}, &pk)
	return pk, k
}

// challenge asks for a login challenge, for user if not empty.
func (e *env) challenge(user string) api.PasskeyChallenge {
	e.t.Helper()
	var ch api.PasskeyChallenge
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/passkey/challenge", api.PasskeyChallengeRequest{User: user}, &ch)
	return ch
}

// passkeyLogin answers a fresh challenge with k and logs in with it
// alone, answering the status and body.
func (e *env) passkeyLogin(a *authenticator, k *softKey, user string) (int, []byte) {
	e.t.Helper()
	ch := e.challenge(user)
	status, _, b := e.do(cred{}, "POST", "/v1/auth/passkey/login", api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, k, 1)}})
	return status, b
}

func (e *env) loginFailedAs(status int, h http.Header, b []byte, what string) {
	e.t.Helper()
	if status != http.StatusUnauthorized || e.problemOf(h, b).Type != problemType("login-failed") {
		e.t.Errorf("%s: status %d, want 401 login-failed: %s", what, status, b)
	}
}

// TestPasskeyRegisterAndLogin: a user registers a passkey (a discoverable
// credential, user verification preferred, their others excluded), lists
// it, and logs in with it alone — tokens, or cookies for a browser —
// with the session's methods [passkey]; once they have one, a password
// alone is no longer enough, and a password and a passkey are.
func TestPasskeyRegisterAndLogin(t *testing.T) {
	e, a := newPasskeyEnv(t)
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})
	alice := users["alice"]

	var reg api.PasskeyRegistration
	e.must(alice, http.StatusOK, "POST", "/v1/me/passkeys/registration", nil, &reg)
	o := a.options(reg.Options).PublicKey
	if o.RP.ID != "holdfast.test" || o.AuthenticatorSelection.ResidentKey != "required" || o.AuthenticatorSelection.UserVerification != "preferred" {
		t.Errorf("registration options: %s", reg.Options)
	}
	credential, key := a.create(reg.Options)
	var pk api.Passkey
	e.must(alice, http.StatusCreated, "POST", "/v1/me/passkeys", api.PasskeyCreate{Ceremony: reg.Ceremony, Name: "laptop", Credential: credential}, &pk)
	if pk.ID == "" || pk.Name != "laptop" || pk.LastUsedAt != nil {
		t.Errorf("registered passkey: %+v", pk)
	}
	// The next registration excludes it, so the authenticator does not
	// make a second one.
	e.must(alice, http.StatusOK, "POST", "/v1/me/passkeys/registration", nil, &reg)
	if ex := a.options(reg.Options).PublicKey.ExcludeCredentials; len(ex) != 1 || ex[0].ID != b64u.EncodeToString(key.id) {
		t.Errorf("the second registration excludes %+v, want the first passkey", ex)
	}

	// Alone, as tokens: discoverable (no user named) and for a user.
	for _, user := range []string{"", "alice"} {
		ch := e.challenge(user)
		if allow := a.options(ch.Options).PublicKey.AllowCredentials; len(allow) != 0 {
			t.Errorf("a challenge lists credentials %+v: it would tell who has which", allow)
		}
		var tok api.Tokens
		e.must(cred{}, http.StatusOK, "POST", "/v1/auth/passkey/login",
			api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}}, &tok)
		var me api.Me
		e.must(cred{bearer: tok.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, &me)
		if me.User.Name != "alice" || !slices.Equal(me.Methods, []string{"passkey"}) {
			t.Errorf("logged in by passkey (user %q) as %+v", user, me)
		}
	}
	var list api.Page[api.Passkey]
	e.must(alice, http.StatusOK, "GET", "/v1/me/passkeys", nil, &list)
	if len(list.Items) != 1 || list.Items[0].ID != pk.ID || list.Items[0].LastUsedAt == nil {
		t.Errorf("alice's passkeys: %+v", list.Items)
	}

	// As cookies, for a browser: CSRF-checked like a password login.
	b := e.browser()
	ch := e.challenge("")
	login := api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}, Cookie: true}
	if status, _, body := b.do(false, "POST", "/v1/auth/passkey/login", login); status != http.StatusForbidden {
		t.Errorf("a cookie login without the CSRF token: %d %s", status, body)
	}
	ch = e.challenge("")
	login = api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}, Cookie: true}
	status, _, body := b.do(true, "POST", "/v1/auth/passkey/login", login)
	var me api.Me
	if status != http.StatusOK || json.Unmarshal(body, &me) != nil || me.User.Name != "alice" || !slices.Equal(me.Methods, []string{"passkey"}) {
		t.Fatalf("cookie login by passkey: %d %s", status, body)
	}
	if b.cookie(api.CookieAccess) == "" || strings.Contains(string(body), "access_token") {
		t.Errorf("a cookie login set no access cookie or answered tokens: %s", body)
	}
	if status, _, body := b.do(false, "GET", "/v1/me", nil); status != http.StatusOK {
		t.Errorf("the browser's session: %d %s", status, body)
	}

	// A password alone is no longer enough: the answer names the
	// factors that would do.
	status, h, body := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice"})
	p := e.problemOf(h, body)
	if status != http.StatusUnauthorized || p.Type != problemType("second-factor-required") || len(p.Errors) != 1 || p.Errors[0].Field != "passkey" {
		t.Errorf("password alone with a passkey registered: %d %s", status, body)
	}
	// A password and a passkey are.
	ch = e.challenge("alice")
	var tok api.Tokens
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice",
		Passkey: &api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}}, &tok)
	e.must(cred{bearer: tok.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, &me)
	if !slices.Equal(me.Methods, []string{"pwd", "passkey"}) {
		t.Errorf("password and passkey logged in with methods %v", me.Methods)
	}
	// A wrong password with a good passkey is a wrong password.
	ch = e.challenge("alice")
	status, h, body = e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "not-the-password",
		Passkey: &api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}})
	e.loginFailedAs(status, h, body, "a wrong password with a good passkey")

	// Each login is in the audit log, with how.
	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	var byPasskey, registered int
	for _, en := range log.Items {
		if en.Action == "login" && en.Actor == "alice" && en.Result == "ok" && en.Detail["methods"] == "passkey" {
			byPasskey++
		}
		if en.Action == "createPasskey" && en.Actor == "alice" && en.Result == "ok" && en.Detail["name"] == "laptop" {
			registered++
		}
	}
	if byPasskey != 3 || registered != 1 {
		t.Errorf("audit: %d passkey logins (want 3), %d registrations (want 1)", byPasskey, registered)
	}
}

// TestPasskeyRefused: every answer that must not log in answers the
// same 401 and is audited as a failed login with its reason: a wrong
// origin, a ceremony answered twice or expired, a cloned authenticator,
// another user's passkey, a removed passkey, an authenticator that did
// not verify its user (as the only factor).
func TestPasskeyRefused(t *testing.T) {
	e, a := newPasskeyEnv(t)
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember, "bob": api.RoleMember})
	_, aliceKey := e.registerPasskey(users["alice"], a, "laptop")
	bobPK, bobKey := e.registerPasskey(users["bob"], a, "phone")
	post := func(ceremony string, credential json.RawMessage) (int, http.Header, []byte) {
		return e.do(cred{}, "POST", "/v1/auth/passkey/login", api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ceremony, Credential: credential}})
	}

	t.Run("wrong origin", func(t *testing.T) {
		evil := &authenticator{t: t, origin: "https://holdfast.test.evil.example", uv: true}
		ch := e.challenge("")
		status, h, b := post(ch.Ceremony, evil.get(ch.Options, aliceKey, 1))
		e.loginFailedAs(status, h, b, "an answer from another origin")
	})
	t.Run("replayed ceremony", func(t *testing.T) {
		ch := e.challenge("")
		e.must(cred{}, http.StatusOK, "POST", "/v1/auth/passkey/login",
			api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, aliceKey, 1)}}, nil)
		status, h, b := post(ch.Ceremony, a.get(ch.Options, aliceKey, 1))
		e.loginFailedAs(status, h, b, "a ceremony answered twice")
	})
	t.Run("expired ceremony", func(t *testing.T) {
		ch := e.challenge("")
		e.clock.advance(ceremonyTTL + time.Second)
		status, h, b := post(ch.Ceremony, a.get(ch.Options, aliceKey, 1))
		e.loginFailedAs(status, h, b, "an expired ceremony")
	})
	t.Run("cloned authenticator", func(t *testing.T) {
		clone := *aliceKey
		if status, b := e.passkeyLogin(a, aliceKey, ""); status != http.StatusOK {
			t.Fatalf("the original: %d %s", status, b)
		}
		// The copy's counter is behind the original's last one.
		ch := e.challenge("")
		status, h, b := post(ch.Ceremony, a.get(ch.Options, &clone, 0))
		e.loginFailedAs(status, h, b, "a cloned authenticator's lagging counter")
	})
	t.Run("another user's passkey", func(t *testing.T) {
		ch := e.challenge("alice")
		status, h, b := post(ch.Ceremony, a.get(ch.Options, bobKey, 1))
		e.loginFailedAs(status, h, b, "bob's passkey answering a challenge for alice")
		// As alice's second factor.
		ch = e.challenge("")
		status, h, b = e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice",
			Passkey: &api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, bobKey, 1)}})
		e.loginFailedAs(status, h, b, "bob's passkey as alice's second factor")
	})
	t.Run("no user verification", func(t *testing.T) {
		noUV := &authenticator{t: t, origin: testOrigin}
		ch := e.challenge("")
		status, h, b := post(ch.Ceremony, noUV.get(ch.Options, aliceKey, 1))
		e.loginFailedAs(status, h, b, "a passkey alone without user verification")
		// As the second factor, presence is enough: the password is
		// the other.
		ch = e.challenge("alice")
		e.must(cred{}, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice",
			Passkey: &api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: noUV.get(ch.Options, aliceKey, 1)}}, nil)
	})
	t.Run("removed passkey", func(t *testing.T) {
		e.must(users["bob"], http.StatusNoContent, "DELETE", "/v1/me/passkeys/"+bobPK.ID, nil, nil)
		e.must(users["bob"], http.StatusNotFound, "DELETE", "/v1/me/passkeys/"+bobPK.ID, nil, nil)
		ch := e.challenge("")
		status, h, b := post(ch.Ceremony, a.get(ch.Options, bobKey, 1))
		e.loginFailedAs(status, h, b, "a removed passkey")
		// With his last second factor gone, bob's password is enough
		// again, as he chose; the audit log says he has none left.
		e.login("bob", "password-of-bob", "")
	})
	t.Run("someone else's passkey to remove", func(t *testing.T) {
		var list api.Page[api.Passkey]
		e.must(users["alice"], http.StatusOK, "GET", "/v1/me/passkeys", nil, &list)
		e.must(users["bob"], http.StatusNotFound, "DELETE", "/v1/me/passkeys/"+list.Items[0].ID, nil, nil)
	})

	var log api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &log)
	for _, want := range []string{"origin", "ceremony unknown, answered or expired", "counter went back", "another user", "user verification"} {
		found := false
		for _, en := range log.Items {
			found = found || (en.Action == "login" && strings.HasPrefix(en.Result, "denied: ") && strings.Contains(en.Result, want))
		}
		if !found {
			t.Errorf("no failed login audited with a reason naming %q", want)
		}
	}
	removed := false
	for _, en := range log.Items {
		removed = removed || (en.Action == "deletePasskey" && en.Actor == "bob" && en.Result == "ok" && en.Detail["second_factors_left"] == "none")
	}
	if !removed {
		t.Error("the removal of bob's last second factor is not in the audit log as such")
	}
}

// TestPasskeyLoginThrottled: failed passkey logins count in the same
// limiter as failed passwords, for the passkey's user: past the limit a
// good answer from that address is refused too (429, Retry-After). And
// one address cannot hold more than its share of challenges.
func TestPasskeyLoginThrottled(t *testing.T) {
	e, a := newPasskeyEnv(t)
	users := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})
	_, key := e.registerPasskey(users["alice"], a, "laptop")
	for i := range 5 {
		ch := e.challenge("")
		status, h, b := e.do(cred{}, "POST", "/v1/auth/passkey/login",
			api.PasskeyLogin{PasskeyAssertion: api.PasskeyAssertion{Ceremony: ch.Ceremony + "-not-it", Credential: a.get(ch.Options, key, 1)}})
		e.loginFailedAs(status, h, b, "a wrong ceremony, attempt "+itoa(int64(i+1)))
	}
	status, b := e.passkeyLogin(a, key, "")
	if status != http.StatusTooManyRequests {
		t.Errorf("a good passkey after 5 failures from this address: %d %s, want 429", status, b)
	}
	// Another of alice's factors is locked from here too: it is the
	// account's limit, not the passkey's.
	status, h, b2 := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice"})
	if status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("alice's password after 5 failed passkey logins: %d %s, want 429 with Retry-After", status, b2)
	}

	// Challenges: this address's share is maxCeremoniesPerSource.
	live := 0
	for {
		status, h, b := e.do(cred{}, "POST", "/v1/auth/passkey/challenge", nil)
		if status == http.StatusTooManyRequests {
			if h.Get("Retry-After") == "" {
				t.Error("no Retry-After with a refused challenge")
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("challenge: %d %s", status, b)
		}
		if live++; live > maxCeremoniesPerSource {
			t.Fatalf("more than %d challenges under way from one address", maxCeremoniesPerSource)
		}
	}
	// The 6 challenges above are still under way: the failures named
	// another ceremony, and the throttled login was refused before its
	// was taken.
	if live != maxCeremoniesPerSource-6 {
		t.Errorf("%d challenges were given before the refusal, want %d", live, maxCeremoniesPerSource-6)
	}
	// Once they expire, there are more.
	e.clock.advance(ceremonyTTL)
	e.challenge("")
}

// TestPasskeyClient: the Go client (what the CLI runs) registers a
// passkey and logs in with it, lists the passkeys and removes one by
// name; the user's password alone logs in again once their last second
// factor is gone.
func TestPasskeyClient(t *testing.T) {
	e, a := newPasskeyEnv(t)
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	laptop, _ := e.registerPasskey(alice, a, "laptop")
	c, err := hfclient.New(e.ts.URL, hfclient.WithHTTPClient(e.ts.Client()), hfclient.WithSession(hfclient.Session{AccessToken: alice.bearer}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The ceremonies through the client: register, then log in with
	// the passkey alone in a client of its own.
	reg, err := c.BeginPasskeyRegistration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	credential, phoneKey := a.create(reg.Options)
	phone, err := c.CreatePasskey(ctx, api.PasskeyCreate{Ceremony: reg.Ceremony, Name: "phone", Credential: credential})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := hfclient.New(e.ts.URL, hfclient.WithHTTPClient(e.ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := anon.PasskeyChallenge(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.LoginWithPasskey(ctx, api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, phoneKey, 1)}); err != nil {
		t.Fatal(err)
	}
	if me, err := anon.Me(ctx); err != nil || me.User.Name != "alice" || !slices.Equal(me.Methods, []string{"passkey"}) {
		t.Errorf("logged in by passkey through the client as %+v %v", me, err)
	}
	keys, err := c.ListPasskeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != laptop.ID || keys[1].ID != phone.ID {
		t.Fatalf("ListPasskeys: %+v %v", keys, err)
	}
	if _, err := c.RemovePasskeyNamed(ctx, "tablet"); err == nil || !strings.Contains(err.Error(), `no passkey named "tablet"`) {
		t.Errorf("removing a passkey alice does not have: %v", err)
	}
	for _, name := range []string{"laptop", "phone"} {
		if k, err := c.RemovePasskeyNamed(ctx, name); err != nil || k.Name != name {
			t.Errorf("RemovePasskeyNamed(%s): %+v %v", name, k, err)
		}
	}
	if keys, err := c.ListPasskeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("passkeys left: %+v %v", keys, err)
	}
	e.login("alice", "password-of-alice", "")
}

// TestPublicURL: passkeys need a host name (an IP address is no
// WebAuthn RP ID) and the origin alone; the default is localhost with
// the port listened on.
func TestPublicURL(t *testing.T) {
	for _, bad := range []string{"https://127.0.0.1:8443", "https://[::1]:8443", "http://holdfast.example", "https://holdfast.example/portal", "holdfast.example"} {
		if _, err := newWebAuthn(bad, "c"); err == nil {
			t.Errorf("public URL %q accepted", bad)
		} else if strings.Contains(bad, "[::1]") || strings.Contains(bad, "127.0.0.1") {
			if !strings.Contains(err.Error(), "IP address") {
				t.Errorf("public URL %q refused without saying an IP address will not do: %v", bad, err)
			}
		}
	}
	if wa, err := newWebAuthn("http://localhost:8080", "c"); err != nil || wa.Config.RPID != "localhost" || wa.Config.RPOrigins[0] != "http://localhost:8080" {
		t.Errorf("http on localhost (a secure context for browsers): %v", err)
	}
	wa, err := newWebAuthn("https://Holdfast.Example:8443", "c")
	if err != nil || wa.Config.RPID != "holdfast.example" || !slices.Equal(wa.Config.RPOrigins, []string{"https://holdfast.example:8443"}) {
		t.Errorf("relying party of https://Holdfast.Example:8443: %+v %v", wa, err)
	}
	for listen, want := range map[string]string{"127.0.0.1:8443": "https://localhost:8443", "[::]:443": "https://localhost", ":9000": "https://localhost:9000"} {
		if got, err := DefaultPublicURL(listen); err != nil || got != want {
			t.Errorf("DefaultPublicURL(%q) = %q %v, want %q", listen, got, err, want)
		}
	}
	// Without a public URL there are no passkeys, and the API says why.
	e := newEnv(t, Config{})
	status, h, b := e.do(e.admin, "POST", "/v1/me/passkeys/registration", nil)
	if status != http.StatusConflict || e.problemOf(h, b).Type != problemType("passkeys-unavailable") {
		t.Errorf("registration without a public URL: %d %s", status, b)
	}
}

// TestPasskeyWithTOTP: a user with TOTP and a passkey is asked for either
// (the problem names both fields), and either does as the second factor.
func TestPasskeyWithTOTP(t *testing.T) {
	e, a := newPasskeyEnv(t)
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	var en api.TOTPEnrollment
	e.must(alice, http.StatusCreated, "POST", "/v1/me/totp", nil, &en)
	secret, err := auth.DecodeTOTPSecret(en.Secret)
	if err != nil {
		t.Fatal(err)
	}
	e.must(alice, http.StatusNoContent, "POST", "/v1/me/totp/confirm", api.TOTPConfirm{Code: auth.TOTPCode(secret, e.clock.now())}, nil)
	// With TOTP alone, the answer is what it always was.
	status, h, b := e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice"})
	if status != http.StatusUnauthorized || e.problemOf(h, b).Type != problemType("totp-required") {
		t.Errorf("password alone with TOTP: %d %s", status, b)
	}
	_, key := e.registerPasskey(alice, a, "laptop")

	status, h, b = e.do(cred{}, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice"})
	p := e.problemOf(h, b)
	var fields []string
	for _, fe := range p.Errors {
		fields = append(fields, fe.Field)
	}
	if status != http.StatusUnauthorized || p.Type != problemType("second-factor-required") || !slices.Equal(fields, []string{"passkey", "totp"}) {
		t.Errorf("password alone with TOTP and a passkey: %d %s", status, b)
	}
	e.clock.advance(30 * time.Second) // the code that confirmed is spent
	var tok api.Tokens
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice", TOTP: auth.TOTPCode(secret, e.clock.now())}, &tok)
	var me api.Me
	e.must(cred{bearer: tok.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, &me)
	if !slices.Equal(me.Methods, []string{"pwd", "otp"}) {
		t.Errorf("password and TOTP: methods %v", me.Methods)
	}
	ch := e.challenge("alice")
	e.must(cred{}, http.StatusOK, "POST", "/v1/auth/login", api.LoginRequest{User: "alice", Password: "password-of-alice",
		Passkey: &api.PasskeyAssertion{Ceremony: ch.Ceremony, Credential: a.get(ch.Options, key, 1)}}, &tok)
	e.must(cred{bearer: tok.AccessToken}, http.StatusOK, "GET", "/v1/me", nil, &me)
	if !slices.Equal(me.Methods, []string{"pwd", "passkey"}) {
		t.Errorf("password and passkey: methods %v", me.Methods)
	}
}
