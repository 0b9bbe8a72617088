package auth

import (
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP (RFC 6238) comes from github.com/pquerna/otp, with the parameters
// every authenticator app understands: HMAC-SHA1, 6 digits, 30-second
// steps counted from the Unix epoch.
const (
	totpPeriod    = 30 // seconds
	totpSecretLen = 20 // RFC 4226 recommends 160 bits
	// TOTPSkew is how many steps either side of the current one a code
	// is accepted for, for clock skew.
	TOTPSkew = 1
)

var totpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

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

// TOTPKey is a new TOTP second factor. Secret is what to keep (sealed);
// Encoded (base32, typed by hand) and URI (otpauth://, read from a QR
// code) are for the user's authenticator app: show them once, never log
// them.
type TOTPKey struct {
	Secret  []byte
	Encoded string
	URI     string
}

// NewTOTPKey makes a 20-byte secret for account at issuer, e.g.
// otpauth://totp/Holdfast:alice?algorithm=SHA1&digits=6&issuer=Holdfast&period=30&secret=JBSW...
func NewTOTPKey(issuer, account string) (TOTPKey, error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: account,
		Period: totpPeriod, SecretSize: totpSecretLen, Digits: totpOpts.Digits, Algorithm: totpOpts.Algorithm,
	})
	if err != nil {
		return TOTPKey{}, fmt.Errorf("totp key: %w", err)
	}
	secret, err := DecodeTOTPSecret(k.Secret())
	if err != nil {
		return TOTPKey{}, fmt.Errorf("totp key: %w", err)
	}
	return TOTPKey{Secret: secret, Encoded: k.Secret(), URI: k.URL()}, nil
}

// DecodeTOTPSecret reads the base32 form back (padding and case optional).
func DecodeTOTPSecret(s string) ([]byte, error) {
	return base32NoPad.DecodeString(strings.ToUpper(strings.TrimRight(s, "=")))
}

// TOTPStep is the time step a code made at t belongs to.
func TOTPStep(t time.Time) uint64 { return uint64(t.Unix()) / totpPeriod }

// TOTPCode returns the 6-digit code for secret at time t.
func TOTPCode(secret []byte, t time.Time) string {
	code, err := hotp.GenerateCodeCustom(base32NoPad.EncodeToString(secret), TOTPStep(t), totpOpts)
	if err != nil {
		panic(err) // only for a secret that is not base32, and we encoded it
	}
	return code
}

// MatchTOTP checks code against secret at now, accepting the current step
// and TOTPSkew steps either side, and returns the step that matched. It
// keeps no state: a caller must refuse a step that is not after the last
// one it accepted for the user (RFC 6238 section 5.2), else a code can be
// replayed within its window. Errors: ErrInvalidCode.
func MatchTOTP(secret []byte, code string, now time.Time) (uint64, error) {
	if len(code) != totpOpts.Digits.Length() || len(secret) == 0 {
		return 0, ErrInvalidCode
	}
	enc := base32NoPad.EncodeToString(secret)
	cur := TOTPStep(now)
	// Every step in the window is compared (in constant time, by the
	// library), without stopping at a match, so the time taken says
	// nothing about which step matched.
	var matched uint64
	found := false
	for step := cur - min(cur, TOTPSkew); step <= cur+TOTPSkew; step++ {
		ok, err := hotp.ValidateCustom(code, step, enc, totpOpts)
		if err != nil {
			return 0, ErrInvalidCode
		}
		if ok && !found {
			matched, found = step, true
		}
	}
	if !found {
		return 0, ErrInvalidCode
	}
	return matched, nil
}
