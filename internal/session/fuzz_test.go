package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerifyAccess feeds Verify arbitrary text: it must never panic, must
// fail only with its own errors, and must accept nothing but whole tokens
// it signed itself.
func FuzzVerifyAccess(f *testing.F) {
	e := newEnv(f)
	tok := e.login("u-alice", "pwd", "otp")
	valid := str(tok.Access)
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(forge(f, e.m, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil))
	f.Add(forge(f, e.m, jwt.SigningMethodHS256, []byte(e.m.signer.pub), nil))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := e.m.Verify(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked) {
				t.Fatalf("Verify returned a foreign error: %v", err)
			}
			return
		}
		// Only the one token we signed verifies; no rewriting of it
		// (padding, trailing bits, extra segments) may.
		if s != valid || c.Subject != "u-alice" || c.Family != tok.Family {
			t.Fatalf("Verify accepted %q as %+v", s, c)
		}
	})
}
