package auth

import (
	"fmt"
	"log/slog"
)

const redacted = "[redacted]"

// Secret holds secret bytes (a password, an API-key secret, a TOTP seed)
// while they are passed around. Every way of printing or encoding it
// (fmt verbs, json, text, slog) shows "[redacted]"; only Expose returns
// the value. It holds a pointer so that even fmt's reflection over an
// unexported struct field, which skips these methods, prints an address
// rather than the bytes.
type Secret struct {
	v *[]byte
}

// NewSecret returns a Secret holding a copy of b.
func NewSecret(b []byte) Secret {
	c := append([]byte(nil), b...)
	return Secret{v: &c}
}

// SecretString returns a Secret holding s.
func SecretString(s string) Secret { return NewSecret([]byte(s)) }

// Expose returns the secret bytes. Call it only where the value is used
// (hashing, signing, sealing), never to print.
func (s Secret) Expose() []byte {
	if s.v == nil {
		return nil
	}
	return *s.v
}

// IsZero reports whether s holds nothing.
func (s Secret) IsZero() bool { return s.v == nil || len(*s.v) == 0 }

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { fmt.Fprint(f, redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }

var _ interface {
	fmt.Stringer
	fmt.GoStringer
	fmt.Formatter
	slog.LogValuer
} = Secret{}
