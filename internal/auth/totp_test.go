package auth

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// RFC 6238 appendix B test vectors (8 digits).
func TestTOTPRFC6238Vectors(t *testing.T) {
	seed20 := []byte("12345678901234567890")
	seed32 := []byte("12345678901234567890123456789012")
	seed64 := []byte("1234567890123456789012345678901234567890123456789012345678901234")
	algs := []struct {
		name string
		h    func() hash.Hash
		seed []byte
	}{{"SHA1", sha1.New, seed20}, {"SHA256", sha256.New, seed32}, {"SHA512", sha512.New, seed64}}
	vectors := []struct {
		unix  int64
		codes [3]string
	}{
		{59, [3]string{"94287082", "46119246", "90693936"}},
		{1111111109, [3]string{"07081804", "68084774", "25091201"}},
		{1111111111, [3]string{"14050471", "67062674", "99943326"}},
		{1234567890, [3]string{"89005924", "91819424", "93441116"}},
		{2000000000, [3]string{"69279037", "90698825", "38618901"}},
		{20000000000, [3]string{"65353130", "77737706", "47863826"}},
	}
	for _, v := range vectors {
		for i, a := range algs {
			got := hotp(a.h, a.seed, totpCounter(time.Unix(v.unix, 0)), 8)
			if got != v.codes[i] {
				t.Errorf("%s at %d: got %s, want %s", a.name, v.unix, got, v.codes[i])
			}
		}
		// The 6-digit code is the last six digits of the 8-digit one.
		if got, want := TOTPCode(seed20, time.Unix(v.unix, 0)), v.codes[0][2:]; got != want {
			t.Errorf("TOTPCode at %d: got %s, want %s", v.unix, got, want)
		}
	}
}

func TestTOTPURI(t *testing.T) {
	uri := TOTPURI("Holdfast", "alice@example.org", []byte("12345678901234567890"))
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Holdfast:alice@example.org" {
		t.Fatalf("bad URI %q", uri)
	}
	q := u.Query()
	if q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || strings.Contains(q.Get("secret"), "=") {
		t.Fatalf("secret %q", q.Get("secret"))
	}
	if q.Get("issuer") != "Holdfast" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Fatalf("parameters %v", q)
	}
}

func TestNewTOTPSecret(t *testing.T) {
	a, err := NewTOTPSecret()
	if err != nil || len(a) != 20 {
		t.Fatalf("len %d err %v", len(a), err)
	}
	b, _ := NewTOTPSecret()
	if string(a) == string(b) {
		t.Fatal("two secrets equal")
	}
}

var t0 = time.Unix(1_700_000_010, 0) // 10 s into a step

func TestTOTPVerifySkew(t *testing.T) {
	secret := []byte("12345678901234567890")
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
		var v TOTPVerifier
		code := TOTPCode(secret, t0.Add(tc.offset))
		if err := v.Verify("u1", secret, code, t0); !errors.Is(err, tc.want) {
			t.Errorf("code from %v: got %v, want %v", tc.offset, err, tc.want)
		}
	}
	var v TOTPVerifier
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if err := v.Verify("u1", secret, bad, t0); !errors.Is(err, ErrInvalidCode) {
			t.Errorf("code %q: %v", bad, err)
		}
	}
	if err := v.Verify("u1", []byte("another secret 1234"), TOTPCode(secret, t0), t0); !errors.Is(err, ErrInvalidCode) {
		t.Errorf("wrong secret: %v", err)
	}
}

func TestTOTPReplay(t *testing.T) {
	secret := []byte("12345678901234567890")
	var v TOTPVerifier
	code := TOTPCode(secret, t0)
	if err := v.Verify("u1", secret, code, t0); err != nil {
		t.Fatal(err)
	}
	// Same code, same step, and later within the window: refused.
	for _, at := range []time.Time{t0, t0.Add(5 * time.Second), t0.Add(35 * time.Second)} {
		if err := v.Verify("u1", secret, code, at); !errors.Is(err, ErrReplayed) {
			t.Fatalf("replay at %v: %v", at.Sub(t0), err)
		}
	}
	// An earlier step's code is refused once a later step was used.
	if err := v.Verify("u1", secret, TOTPCode(secret, t0.Add(-30*time.Second)), t0); !errors.Is(err, ErrReplayed) {
		t.Fatalf("earlier step: %v", err)
	}
	// Another user with the same code is unaffected.
	if err := v.Verify("u2", secret, code, t0); err != nil {
		t.Fatalf("other user: %v", err)
	}
	// The next step's code is fine.
	if err := v.Verify("u1", secret, TOTPCode(secret, t0.Add(30*time.Second)), t0.Add(30*time.Second)); err != nil {
		t.Fatalf("next step: %v", err)
	}
}

func TestTOTPReplayMemoryExpires(t *testing.T) {
	secret := []byte("12345678901234567890")
	v := TOTPVerifier{MaxEntries: 3}
	for i := range 3 {
		if err := v.Verify(fmt.Sprint("u", i), secret, TOTPCode(secret, t0), t0); err != nil {
			t.Fatal(err)
		}
	}
	// Full, and every remembered step is still replayable: refuse.
	if err := v.Verify("u9", secret, TOTPCode(secret, t0), t0); !errors.Is(err, ErrBusy) {
		t.Fatalf("at cap: %v", err)
	}
	// Two steps later the old steps are outside the window and are forgotten.
	later := t0.Add(60 * time.Second)
	if err := v.Verify("u9", secret, TOTPCode(secret, later), later); err != nil {
		t.Fatalf("after window: %v", err)
	}
	if n := v.remembered(); n != 1 {
		t.Fatalf("remembered %d users, want 1", n)
	}
}

func TestTOTPConcurrentReplay(t *testing.T) {
	secret := []byte("12345678901234567890")
	var v TOTPVerifier
	code := TOTPCode(secret, t0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 32 {
		wg.Go(func() {
			if v.Verify("u1", secret, code, t0) == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if accepted != 1 {
		t.Fatalf("code accepted %d times concurrently, want 1", accepted)
	}
}
