package session

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/holdfast/holdfast/internal/auth"
)

func TestAccessRoundTrip(t *testing.T) {
	e := newEnv(t)
	login := e.clk.Now()
	tok := e.login("u-alice", "pwd", "otp")
	c, err := e.m.Verify(str(tok.Access))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "u-alice" || c.Family != tok.Family || c.Family == "" || c.ID == "" || c.KeyID != e.m.signer.kid {
		t.Errorf("claims = %+v, tokens family %q", c, tok.Family)
	}
	if !slices.Equal(c.Methods, []string{"pwd", "otp"}) {
		t.Errorf("methods = %v", c.Methods)
	}
	if !c.IssuedAt.Equal(login) || !c.AuthTime.Equal(login) || !c.Expires.Equal(login.Add(DefaultAccessTTL)) || !tok.AccessExpires.Equal(c.Expires) {
		t.Errorf("times: iat %v auth_time %v exp %v, reported exp %v; login at %v", c.IssuedAt, c.AuthTime, c.Expires, tok.AccessExpires, login)
	}

	// The wire format is what other clients may rely on.
	parts := strings.Split(str(tok.Access), ".")
	var hdr, payload map[string]any
	mustB64JSON(t, parts[0], &hdr)
	mustB64JSON(t, parts[1], &payload)
	if hdr["alg"] != "EdDSA" || hdr["typ"] != "at+jwt" || hdr["kid"] != e.m.signer.kid {
		t.Errorf("header = %v", hdr)
	}
	for _, k := range []string{"iss", "sub", "sid", "amr", "auth_time", "iat", "exp", "jti"} {
		if _, ok := payload[k]; !ok {
			t.Errorf("payload lacks %q: %v", k, payload)
		}
	}
	if payload["iss"] != issuer {
		t.Errorf("iss = %v", payload["iss"])
	}
}

func mustB64JSON(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := b64.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestAccessExpiry(t *testing.T) {
	e := newEnv(t)
	tok := e.login("u-alice")
	e.clk.Advance(DefaultAccessTTL + DefaultLeeway - time.Millisecond)
	if _, err := e.m.Verify(str(tok.Access)); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	e.clk.Advance(time.Millisecond)
	if _, err := e.m.Verify(str(tok.Access)); !errors.Is(err, ErrExpired) {
		t.Fatalf("past leeway: err = %v, want ErrExpired", err)
	}
}

// forge signs access claims like the Manager does, then lets edit change
// header and claims. With no edit the result verifies (checked by
// TestForgeBaseline), so each rejection below is due to its edit alone.
func forge(t testing.TB, m *Manager, method jwt.SigningMethod, key any, edit func(hdr map[string]any, c *accessClaims)) string {
	t.Helper()
	now := m.now()
	c := &accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   "u-mallory",
			ID:        "jti-1",
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)),
		},
		SID:      "fam-1",
		AMR:      []string{"pwd"},
		AuthTime: jwt.NewNumericDate(now),
	}
	tok := jwt.NewWithClaims(method, c)
	tok.Header["kid"] = m.signer.kid
	tok.Header["typ"] = accessType
	if edit != nil {
		edit(tok.Header, c)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestForgeBaseline(t *testing.T) {
	e := newEnv(t)
	if _, err := e.m.Verify(forge(t, e.m, jwt.SigningMethodEdDSA, e.m.signer.priv, nil)); err != nil {
		t.Fatalf("an unedited forged token must verify, else the rejection tests prove nothing: %v", err)
	}
}

func wantInvalid(t *testing.T, err error, reason error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, reason) {
		t.Errorf("err = %v, want ErrInvalid because %v", err, reason)
	}
}

func TestAccessTampered(t *testing.T) {
	e := newEnv(t)
	tok := str(e.login("u-alice").Access)
	parts := strings.Split(tok, ".")

	sig, _ := b64.DecodeString(parts[2])
	sig[0] ^= 1
	_, err := e.m.Verify(parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig))
	wantInvalid(t, err, errBadSignature)

	var payload map[string]any
	mustB64JSON(t, parts[1], &payload)
	payload["sub"] = "u-admin"
	pb, _ := json.Marshal(payload)
	_, err = e.m.Verify(parts[0] + "." + b64.EncodeToString(pb) + "." + parts[2])
	wantInvalid(t, err, errBadSignature)

	var hdr map[string]any
	mustB64JSON(t, parts[0], &hdr)
	hdr["kid"] = "someone-elses"
	hb, _ := json.Marshal(hdr)
	_, err = e.m.Verify(b64.EncodeToString(hb) + "." + parts[1] + "." + parts[2])
	wantInvalid(t, err, errUnknownKey)

	for _, s := range []string{"", "x", tok + ".", parts[0] + "." + parts[1], tok + "=", strings.Repeat("a", maxAccessLen+1)} {
		_, err = e.m.Verify(s)
		wantInvalid(t, err, errMalformed)
	}
}

func TestAccessAlgorithmConfusion(t *testing.T) {
	e := newEnv(t)
	m := e.m

	none := forge(t, m, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)
	_, err := m.Verify(none)
	wantInvalid(t, err, errBadAlg)

	// The classic confusion: HMAC keyed with the public key, which anyone
	// may know, accepted by a verifier that trusts the token's alg.
	hs := forge(t, m, jwt.SigningMethodHS256, []byte(m.signer.pub), nil)
	_, err = m.Verify(hs)
	wantInvalid(t, err, errBadAlg)

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Verify(forge(t, m, jwt.SigningMethodES256, ec, nil))
	wantInvalid(t, err, errBadAlg)

	// An alg the jwt package does not implement at all.
	parts := strings.Split(none, ".")
	var hdr map[string]any
	mustB64JSON(t, parts[0], &hdr)
	hdr["alg"] = "Ed448"
	hb, _ := json.Marshal(hdr)
	_, err = m.Verify(b64.EncodeToString(hb) + "." + parts[1] + "." + parts[2])
	wantInvalid(t, err, errBadAlg)
}

func TestAccessClaimsChecked(t *testing.T) {
	e := newEnv(t)
	m := e.m
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		key    any
		edit   func(map[string]any, *accessClaims)
		reason error
	}{
		{"wrong issuer", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.Issuer = "https://evil.test" }, errBadIssuer},
		{"no issuer", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.Issuer = "" }, errBadClaims},
		{"no subject", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.Subject = "" }, errBadClaims},
		{"no session", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.SID = "" }, errBadClaims},
		{"no methods", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.AMR = nil }, errBadClaims},
		{"no expiry", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.ExpiresAt = nil }, errBadClaims},
		{"no iat", m.signer.priv, func(_ map[string]any, c *accessClaims) { c.IssuedAt = nil }, errBadClaims},
		{"issued in the future", m.signer.priv, func(_ map[string]any, c *accessClaims) {
			c.IssuedAt = jwt.NewNumericDate(m.now().Add(2 * DefaultLeeway))
		}, errBadClaims},
		{"expired and wrong issuer", m.signer.priv, func(_ map[string]any, c *accessClaims) {
			c.Issuer = "https://evil.test"
			c.ExpiresAt = jwt.NewNumericDate(m.now().Add(-time.Hour))
		}, errBadIssuer},
		{"not an access token", m.signer.priv, func(h map[string]any, _ *accessClaims) { h["typ"] = "JWT" }, errBadType},
		{"no typ", m.signer.priv, func(h map[string]any, _ *accessClaims) { delete(h, "typ") }, errBadType},
		{"no kid", m.signer.priv, func(h map[string]any, _ *accessClaims) { delete(h, "kid") }, errUnknownKey},
		{"unknown kid", other, func(h map[string]any, _ *accessClaims) { h["kid"] = kidOf(other.Public().(ed25519.PublicKey)) }, errUnknownKey},
		{"our kid, another key", other, nil, errBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Verify(forge(t, m, jwt.SigningMethodEdDSA, tc.key, tc.edit))
			wantInvalid(t, err, tc.reason)
		})
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	oldKid := e.m.signer.kid
	old := e.login("u-alice")
	newKid, err := e.m.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("rotation kept the key id")
	}
	fresh := e.login("u-bob")
	check := func(when string) {
		t.Helper()
		for tok, kid := range map[string]string{str(old.Access): oldKid, str(fresh.Access): newKid} {
			c, err := e.m.Verify(tok)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if c.KeyID != kid {
				t.Errorf("%s: signed by %s, want %s", when, c.KeyID, kid)
			}
		}
	}
	check("after rotation")
	e.restart()
	check("after restart")
	if tok := e.login("u-carol"); mustVerify(t, e.m, tok).KeyID != newKid {
		t.Error("after restart, the old key signs again")
	}

	// Once every token of the old key has expired, Maintain forgets it.
	e.clk.Advance(DefaultAccessTTL + DefaultLeeway - time.Second)
	if err := e.m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count("session_keys"); n != 2 {
		t.Fatalf("%d keys while the old key's tokens may be live, want 2", n)
	}
	e.clk.Advance(2 * time.Second)
	if err := e.m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count("session_keys"); n != 1 {
		t.Errorf("%d keys after the old key's tokens expired, want 1", n)
	}
	if _, err := e.m.Verify(str(old.Access)); !errors.Is(err, errUnknownKey) {
		t.Errorf("old key's token after its key was dropped: %v", err)
	}

	// Maintain rotates a key that has signed for KeyRotateAfter.
	e.clk.Advance(DefaultKeyRotateAfter)
	if err := e.m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if k := mustVerify(t, e.m, e.login("u-dave")).KeyID; k == newKid {
		t.Error("Maintain did not rotate an old signing key")
	}
}

func mustVerify(t *testing.T, m *Manager, tok Tokens) Claims {
	t.Helper()
	c, err := m.Verify(str(tok.Access))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReplaceKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok := e.login("u-alice")
	kid, err := e.m.ReplaceKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Verify(str(tok.Access)); !errors.Is(err, errUnknownKey) {
		t.Fatalf("token of a replaced key: err = %v, want unknown key", err)
	}
	e.restart()
	if _, err := e.m.Verify(str(tok.Access)); !errors.Is(err, errUnknownKey) {
		t.Fatalf("token of a replaced key after restart: err = %v, want unknown key", err)
	}
	// Refresh tokens are not signed, so the session survives.
	if c := mustVerify(t, e.m, e.refresh(tok)); c.KeyID != kid {
		t.Errorf("refreshed token signed by %s, want %s", c.KeyID, kid)
	}
}

func TestKeysSealedAtRest(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.m.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Query(`SELECT kid, sealed_seed FROM session_keys`)
	if err != nil {
		t.Fatal(err)
	}
	sealed := map[string][]byte{}
	for rows.Next() {
		var kid string
		var s []byte
		if err := rows.Scan(&kid, &s); err != nil {
			t.Fatal(err)
		}
		sealed[kid] = s
	}
	rows.Close()
	for kid, k := range e.m.keys {
		if bytes.Contains(sealed[kid], k.priv.Seed()) || bytes.Contains(sealed[kid], k.priv) {
			t.Errorf("key %s is stored in the clear", kid)
		}
	}

	if _, err := New(ctx, e.db, testBox(t, 2), e.cfg); !errors.Is(err, auth.ErrOpen) {
		t.Errorf("New with another master key: err = %v, want auth.ErrOpen", err)
	}

	// Sealed seeds are bound to their key ids: swapped, they do not open.
	var kids []string
	for kid := range sealed {
		kids = append(kids, kid)
	}
	for i, kid := range kids {
		if _, err := e.db.Exec(`UPDATE session_keys SET sealed_seed = ? WHERE kid = ?`, sealed[kids[1-i]], kid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(ctx, e.db, e.box, e.cfg); !errors.Is(err, auth.ErrOpen) {
		t.Errorf("New with swapped keys: err = %v, want auth.ErrOpen", err)
	}
}

func TestConfig(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := New(ctx, e.db, e.box, Config{}); err == nil {
		t.Error("New without an issuer succeeded")
	}
	if _, err := New(ctx, e.db, e.box, Config{Issuer: issuer, AccessTTL: -time.Second}); err == nil {
		t.Error("New with a negative duration succeeded")
	}
	if _, err := New(ctx, e.db, nil, Config{Issuer: issuer}); err == nil {
		t.Error("New without a Box succeeded")
	}
	for _, methods := range [][]string{nil, {""}, {"pwd", ""}} {
		if _, err := e.m.Login(ctx, "u-alice", methods); err == nil {
			t.Errorf("Login with methods %q succeeded", methods)
		}
	}
	if _, err := e.m.Login(ctx, "", []string{"pwd"}); err == nil {
		t.Error("Login without a user succeeded")
	}
	if err := Migrate(ctx, e.db); err != nil {
		t.Errorf("Migrate is not idempotent: %v", err)
	}
}

// BenchmarkVerify measures the per-request cost of authentication.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	tok, err := e.m.Login(context.Background(), "u-alice", []string{"pwd"})
	if err != nil {
		b.Fatal(err)
	}
	s := str(tok.Access)
	for b.Loop() {
		if _, err := e.m.Verify(s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeysRotatedElsewhere: two Managers on one database (replicas of
// the control plane): a token signed with a key one of them rotated in
// is verified by the other, which reads the keys again on meeting it.
func TestKeysRotatedElsewhere(t *testing.T) {
	e := newEnv(t)
	other, err := New(context.Background(), openDB(t, e.path, 1), e.box, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.m.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := e.m.Login(ctx, "u-alice", []string{"pwd"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(string(tok.Access.Expose())); err != nil {
		t.Errorf("the other replica refuses a token of the rotated-in key: %v", err)
	}
}
