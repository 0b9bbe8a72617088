package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TOTP as RFC 6238 with the defaults every authenticator app understands:
// HMAC-SHA1, 6 digits, 30-second steps counted from the Unix epoch.
const (
	totpDigits     = 6
	totpStep       = 30 // seconds
	totpSecretLen  = 20 // RFC 4226 recommends 160 bits
	totpSkewSteps  = 1  // accept the previous and next step for clock skew
	defaultMaxTOTP = 100_000
)

var (
	// ErrInvalidCode means the TOTP code is malformed or does not match.
	ErrInvalidCode = errors.New("invalid code")
	// ErrReplayed means a TOTP code or a request nonce was already used.
	ErrReplayed = errors.New("replayed")
	// ErrBusy means a replay guard is full; the caller should retry later.
	// Guards refuse rather than grow without bound or forget early.
	ErrBusy = errors.New("replay guard full")
)

var base32NoPad = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns a fresh 20-byte TOTP seed.
func NewTOTPSecret() ([]byte, error) {
	s := make([]byte, totpSecretLen)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("totp secret: %w", err)
	}
	return s, nil
}

// EncodeTOTPSecret is the base32 form authenticator apps take by hand.
func EncodeTOTPSecret(secret []byte) string { return base32NoPad.EncodeToString(secret) }

// DecodeTOTPSecret reads the base32 form back (padding and case optional).
func DecodeTOTPSecret(s string) ([]byte, error) {
	return base32NoPad.DecodeString(strings.ToUpper(strings.TrimRight(s, "=")))
}

// TOTPURI returns the otpauth:// URI authenticator apps read from a QR code,
// e.g. otpauth://totp/Holdfast:alice?secret=JBSW...&issuer=Holdfast&algorithm=SHA1&digits=6&period=30.
// The URI contains the secret: show it once, never log it.
func TOTPURI(issuer, account string, secret []byte) string {
	q := url.Values{}
	q.Set("secret", base32NoPad.EncodeToString(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(totpDigits))
	q.Set("period", fmt.Sprint(totpStep))
	u := url.URL{
		Scheme:   "otpauth",
		Host:     "totp",
		Path:     "/" + issuer + ":" + account,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// TOTPCode returns the 6-digit code for secret at time t.
func TOTPCode(secret []byte, t time.Time) string {
	return hotp(sha1.New, secret, totpCounter(t), totpDigits)
}

func totpCounter(t time.Time) uint64 { return uint64(t.Unix()) / totpStep }

// hotp is RFC 4226 section 5.3, with the hash and digit count open so the
// RFC 6238 test vectors (8 digits; SHA1, SHA256, SHA512) can be checked.
func hotp(h func() hash.Hash, secret []byte, counter uint64, digits int) string {
	mac := hmac.New(h, secret)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, bin%mod)
}

// TOTPVerifier checks TOTP codes and refuses replays: once a user's code for
// a time step is accepted, no code for that step or an earlier one is
// accepted again for that user (RFC 6238 section 5.2). The guard remembers
// one step per user, and only while that step is still inside the skew
// window, so memory is bounded by the users who logged in in the last ~90 s.
// The zero value is ready to use and safe for concurrent use.
type TOTPVerifier struct {
	// MaxEntries caps remembered users; at the cap, Verify returns ErrBusy
	// rather than forget a step that could still be replayed. 0 means 100000.
	MaxEntries int

	mu   sync.Mutex
	last map[string]uint64 // userID -> last accepted step
}

// Verify checks code for userID against secret at now, accepting the
// current step and one either side. Errors: ErrInvalidCode, ErrReplayed,
// ErrBusy.
func (v *TOTPVerifier) Verify(userID string, secret []byte, code string, now time.Time) error {
	if len(code) != totpDigits || len(secret) == 0 {
		return ErrInvalidCode
	}
	cur := totpCounter(now)
	// Compare against every step in the window, without stopping early,
	// so timing says nothing about which step matched.
	var matched uint64
	found := 0
	for d := -totpSkewSteps; d <= totpSkewSteps; d++ {
		step := cur + uint64(d)
		if d < 0 && cur < uint64(-d) {
			continue
		}
		eq := subtle.ConstantTimeCompare([]byte(hotp(sha1.New, secret, step, totpDigits)), []byte(code))
		if eq == 1 && found == 0 {
			matched, found = step, 1
		}
	}
	if found == 0 {
		return ErrInvalidCode
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last == nil {
		v.last = make(map[string]uint64)
	}
	if last, ok := v.last[userID]; ok && matched <= last {
		return ErrReplayed
	}
	if _, ok := v.last[userID]; !ok && len(v.last) >= v.maxEntries() {
		v.prune(cur)
		if len(v.last) >= v.maxEntries() {
			return ErrBusy
		}
	}
	v.last[userID] = matched
	if len(v.last)%1024 == 0 {
		v.prune(cur)
	}
	return nil
}

func (v *TOTPVerifier) maxEntries() int {
	if v.MaxEntries > 0 {
		return v.MaxEntries
	}
	return defaultMaxTOTP
}

// prune forgets steps that can no longer be accepted at step cur.
func (v *TOTPVerifier) prune(cur uint64) {
	for user, step := range v.last {
		if step+totpSkewSteps < cur {
			delete(v.last, user)
		}
	}
}

// remembered reports how many users the guard holds (for tests).
func (v *TOTPVerifier) remembered() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.last)
}
