package auth

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

var rfcSeed = []byte("12345678901234567890")

// TestTOTPRFC6238Vectors: the codes are RFC 6238 appendix B's (SHA1; the
// 6-digit code is the last six digits of the 8-digit one there), so the
// library is called with the parameters authenticator apps use.
func TestTOTPRFC6238Vectors(t *testing.T) {
	for _, v := range []struct {
		unix int64
		code string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		at := time.Unix(v.unix, 0)
		if got, want := TOTPCode(rfcSeed, at), v.code[2:]; got != want {
			t.Errorf("TOTPCode at %d: got %s, want %s", v.unix, got, want)
		}
		step, err := MatchTOTP(rfcSeed, v.code[2:], at)
		if err != nil || step != uint64(v.unix)/30 {
			t.Errorf("MatchTOTP at %d: step %d, %v; want %d", v.unix, step, err, v.unix/30)
		}
	}
}

func TestNewTOTPKey(t *testing.T) {
	k, err := NewTOTPKey("Holdfast acme", "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Secret) != 20 {
		t.Fatalf("secret of %d bytes", len(k.Secret))
	}
	if dec, err := DecodeTOTPSecret(strings.ToLower(k.Encoded)); err != nil || string(dec) != string(k.Secret) || strings.Contains(k.Encoded, "=") {
		t.Fatalf("encoded %q does not decode to the secret (%v)", k.Encoded, err)
	}
	u, err := url.Parse(k.URI)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Holdfast acme:alice@example.org" {
		t.Fatalf("bad URI %q", k.URI)
	}
	q := u.Query()
	if q.Get("secret") != k.Encoded || q.Get("issuer") != "Holdfast acme" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Fatalf("parameters %v", q)
	}
	// What the app computes from the URI is what MatchTOTP accepts.
	now := time.Now()
	if _, err := MatchTOTP(k.Secret, TOTPCode(k.Secret, now), now); err != nil {
		t.Fatal(err)
	}
	k2, err := NewTOTPKey("Holdfast acme", "alice@example.org")
	if err != nil || string(k2.Secret) == string(k.Secret) {
		t.Fatalf("two keys share a secret (%v)", err)
	}
	if _, err := NewTOTPKey("", "alice"); err == nil {
		t.Error("a key without an issuer")
	}
}

var t0 = time.Unix(1_700_000_010, 0) // 10 s into a step

func TestMatchTOTPSkew(t *testing.T) {
	for _, tc := range []struct {
		offset time.Duration
		want   error
	}{
		{0, nil},
		{-30 * time.Second, nil},
		{30 * time.Second, nil},
		{-60 * time.Second, ErrInvalidCode},
		{60 * time.Second, ErrInvalidCode},
	} {
		step, err := MatchTOTP(rfcSeed, TOTPCode(rfcSeed, t0.Add(tc.offset)), t0)
		if !errors.Is(err, tc.want) {
			t.Errorf("code from %v: got %v, want %v", tc.offset, err, tc.want)
		}
		if err == nil && step != TOTPStep(t0.Add(tc.offset)) {
			t.Errorf("code from %v matched step %d, want %d", tc.offset, step, TOTPStep(t0.Add(tc.offset)))
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef", " " + TOTPCode(rfcSeed, t0)[1:]} {
		if _, err := MatchTOTP(rfcSeed, bad, t0); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("code %q: %v", bad, err)
		}
	}
	if _, err := MatchTOTP([]byte("another secret 1234"), TOTPCode(rfcSeed, t0), t0); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := MatchTOTP(nil, TOTPCode(nil, t0), t0); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("no secret: %v", err)
	}
}
