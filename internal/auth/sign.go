package auth

import (
	"container/heap"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors from Verifier.Verify. The server may map ErrMalformed to 400 and
// the rest to 401; telling a caller which of them happened reveals nothing
// they could not learn by looking at their own clock and request.
var (
	ErrMalformed    = errors.New("malformed authorization")
	ErrExpired      = errors.New("timestamp outside the allowed window")
	ErrUnknownKey   = errors.New("unknown API key")
	ErrBadSignature = errors.New("bad signature")
	// ErrReplayed (see totp.go) is returned for a reused nonce.
)

// SignatureScheme is the Authorization scheme and the first line of the
// string to sign.
const SignatureScheme = "HF-HMAC-SHA256"

// DefaultWindow is how far a request's timestamp may be from the server's
// clock, either way.
const DefaultWindow = 5 * time.Minute

const (
	maxAuthHeaderLen = 512
	maxKeyIDLen      = 64
	minNonceLen      = 16
	maxNonceLen      = 64
	maxTimestampLen  = 12
	signatureHexLen  = 2 * sha256.Size
)

// NewAPIKey returns a new key id ("hk_" and 16 lower-case base32 characters,
// 80 random bits) and a 32-byte secret. The id is public; the secret is shown
// to the user once and stored only sealed in a Box.
func NewAPIKey() (id string, secret []byte, err error) {
	var idb [10]byte
	secret = make([]byte, 32)
	if _, err := rand.Read(idb[:]); err != nil {
		return "", nil, fmt.Errorf("api key id: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", nil, fmt.Errorf("api key secret: %w", err)
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(idb[:])
	return "hk_" + strings.ToLower(enc), secret, nil
}

// StringToSign returns the canonical bytes an API-key request signs. It is
// seven lines joined by "\n" (LF, no trailing newline):
//
//	HF-HMAC-SHA256
//	<method, upper-cased>                e.g. POST
//	<path, percent-encoding as sent>     e.g. /v1/zones/a%2Fb ("/" if empty)
//	<canonical query>                    e.g. a=1&b=x%20y (empty if none)
//	<lower-case hex SHA-256 of the body> (of the empty string if no body)
//	<timestamp, decimal Unix seconds>    e.g. 1700000000
//	<nonce>                              as in the Authorization header
//
// The canonical query: split the raw query on "&", drop empty parts, split
// each part at its first "=" (a missing "=" means an empty value), decode
// key and value as application/x-www-form-urlencoded ("+" is a space, %XX a
// byte; a part that does not decode is taken literally), re-encode each
// byte outside A-Z a-z 0-9 - . _ ~ as %XX with upper-case hex, sort the
// pairs by encoded key, and join them as key=value with "&".
//
// A parameter may appear once: a query that names one twice (after
// decoding, so "a=1&%61=2" does too) is refused with ErrMalformed. Sorted
// duplicates would sign "a=1&a=2" and "a=2&a=1" alike while the server
// reads the first, so a signed request could be replayed meaning
// something else.
//
// The signature is the lower-case hex HMAC-SHA256 of these bytes under the
// key's secret, sent as
//
//	Authorization: HF-HMAC-SHA256 KeyId=<id>, Timestamp=<unix>, Nonce=<nonce>, Signature=<hex>
func StringToSign(method, path, rawQuery string, bodySHA256 []byte, timestamp time.Time, nonce string) ([]byte, error) {
	cq, err := canonicalQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	return stringToSign(method, path, cq, bodySHA256, timestamp, nonce), nil
}

func stringToSign(method, path, canonQuery string, bodySHA256 []byte, timestamp time.Time, nonce string) []byte {
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.WriteString(SignatureScheme)
	b.WriteByte('\n')
	b.WriteString(strings.ToUpper(method))
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(canonQuery)
	b.WriteByte('\n')
	b.WriteString(hex.EncodeToString(bodySHA256))
	b.WriteByte('\n')
	b.WriteString(strconv.FormatInt(timestamp.Unix(), 10))
	b.WriteByte('\n')
	b.WriteString(nonce)
	return []byte(b.String())
}

// Sign returns the lower-case hex HMAC-SHA256 of StringToSign(...) under
// secret, or StringToSign's error.
func Sign(secret []byte, method, path, rawQuery string, bodySHA256 []byte, timestamp time.Time, nonce string) (string, error) {
	sts, err := StringToSign(method, path, rawQuery, bodySHA256, timestamp, nonce)
	if err != nil {
		return "", err
	}
	return mac(secret, sts), nil
}

func mac(secret, msg []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

// AuthorizationHeader formats the Authorization header value for a signed request.
func AuthorizationHeader(keyID string, timestamp time.Time, nonce, signature string) string {
	return fmt.Sprintf("%s KeyId=%s, Timestamp=%d, Nonce=%s, Signature=%s",
		SignatureScheme, keyID, timestamp.Unix(), nonce, signature)
}

// SignRequest signs r (whose body is body) with the key and sets its
// Authorization header; a Go client's half of Verifier.Verify. It refuses
// a query that names a parameter twice.
func SignRequest(r *http.Request, body []byte, keyID string, secret []byte, now time.Time) error {
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	nonce := hex.EncodeToString(nb[:])
	sum := sha256.Sum256(body)
	sig, err := Sign(secret, r.Method, r.URL.EscapedPath(), r.URL.RawQuery, sum[:], now, nonce)
	if err != nil {
		return fmt.Errorf("sign %s %s: %w", r.Method, r.URL.Path, err)
	}
	r.Header.Set("Authorization", AuthorizationHeader(keyID, now, nonce, sig))
	return nil
}

// canonicalQuery is the query line of StringToSign, or ErrMalformed for a
// query that names a parameter twice.
func canonicalQuery(raw string) (string, error) {
	type pair struct{ k, v string }
	var pairs []pair
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		pairs = append(pairs, pair{escape3986(formUnescape(k)), escape3986(formUnescape(v))})
	}
	// Keys are unique, so the order of values never matters.
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].k < pairs[j].k })
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			if pairs[i-1].k == p.k {
				// Encoded keys are equal exactly when decoded ones are.
				return "", fmt.Errorf("%w: query parameter %.64q appears more than once; name each parameter once", ErrMalformed, formUnescape(p.k))
			}
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String(), nil
}

func formUnescape(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func escape3986(s string) string {
	const hexUpper = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexUpper[c>>4])
		b.WriteByte(hexUpper[c&15])
	}
	return b.String()
}

// Verifier authenticates requests signed with an API key.
type Verifier struct {
	// Window is how far the request timestamp may be from now; 0 means
	// DefaultWindow. Nonces must remember entries for at least this long,
	// which they do: each is kept until its timestamp leaves the window.
	Window time.Duration
	// Nonces remembers nonces seen; required. A NonceCache remembers
	// them in this process; replicas sharing a database need a store
	// they all see (session.Nonces), or a request replayed to another
	// replica would pass.
	Nonces NonceStore
	// Lookup returns the secret of an active key. Revoked or rotated-out
	// keys return ok=false.
	Lookup func(keyID string) (secret []byte, ok bool)
}

type authParams struct {
	keyID, nonce, sig string
	ts                int64
}

// Verify checks r's Authorization header against body and now and returns
// the authenticated key id. Checks run cheapest first; a nonce is recorded
// only once the signature is good, so unauthenticated callers cannot fill
// the nonce cache.
func (v *Verifier) Verify(r *http.Request, body []byte, now time.Time) (keyID string, err error) {
	if v.Nonces == nil {
		return "", errors.New("auth: Verifier needs Nonces")
	}
	s, err := v.Check(r, body, now)
	if err != nil {
		return "", err
	}
	if err := v.Nonces.Add(s.KeyID, s.nonce, s.Expires, now); err != nil {
		return "", err
	}
	return s.KeyID, nil
}

// Signed is a request whose signature checked out. It is authenticated
// once its nonce is spent: Verify spends it in Nonces; a caller of Check
// spends it itself, with the same care (recorded until Expires, a nonce
// already held is a replay).
type Signed struct {
	KeyID   string
	Expires time.Time // when the request leaves the window
	nonce   string
}

// NonceKey is the request's (key id, nonce) as a store keeps it.
func (s Signed) NonceKey() []byte { return NonceKey(s.KeyID, s.nonce) }

// Check is Verify without spending the nonce: for a store that spends it
// with other work, in one round trip to a database.
func (v *Verifier) Check(r *http.Request, body []byte, now time.Time) (Signed, error) {
	if v.Lookup == nil {
		return Signed{}, errors.New("auth: Verifier needs Lookup")
	}
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return Signed{}, fmt.Errorf("%w: want exactly one Authorization header", ErrMalformed)
	}
	p, err := parseAuthorization(vals[0])
	if err != nil {
		return Signed{}, err
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		return Signed{}, fmt.Errorf("%w: query does not parse", ErrMalformed)
	}
	cq, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		return Signed{}, err
	}
	window := v.Window
	if window <= 0 {
		window = DefaultWindow
	}
	ts := time.Unix(p.ts, 0)
	if d := now.Sub(ts); d > window || d < -window {
		return Signed{}, ErrExpired
	}
	secret, ok := v.Lookup(p.keyID)
	if !ok || len(secret) == 0 {
		return Signed{}, ErrUnknownKey
	}
	sum := sha256.Sum256(body)
	want := mac(secret, stringToSign(r.Method, r.URL.EscapedPath(), cq, sum[:], ts, p.nonce))
	if !hmac.Equal([]byte(want), []byte(p.sig)) {
		return Signed{}, ErrBadSignature
	}
	return Signed{KeyID: p.keyID, Expires: ts.Add(window), nonce: p.nonce}, nil
}

// parseAuthorization accepts exactly
// "HF-HMAC-SHA256 KeyId=<id>, Timestamp=<unix>, Nonce=<nonce>, Signature=<hex>".
func parseAuthorization(h string) (authParams, error) {
	var p authParams
	bad := func(what string) (authParams, error) {
		return authParams{}, fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	if len(h) > maxAuthHeaderLen {
		return bad("header too long")
	}
	rest, ok := strings.CutPrefix(h, SignatureScheme+" ")
	if !ok {
		return bad("want scheme " + SignatureScheme)
	}
	parts := strings.Split(rest, ", ")
	names := [...]string{"KeyId", "Timestamp", "Nonce", "Signature"}
	if len(parts) != len(names) {
		return bad("want KeyId, Timestamp, Nonce, Signature")
	}
	var vals [len(names)]string
	for i, part := range parts {
		v, ok := strings.CutPrefix(part, names[i]+"=")
		if !ok {
			return bad("want " + names[i] + "= in position " + strconv.Itoa(i+1))
		}
		vals[i] = v
	}
	p.keyID, p.nonce, p.sig = vals[0], vals[2], vals[3]
	if n := len(p.keyID); n == 0 || n > maxKeyIDLen || !isToken(p.keyID) {
		return bad("KeyId")
	}
	if n := len(vals[1]); n == 0 || n > maxTimestampLen || !isDigits(vals[1]) || (n > 1 && vals[1][0] == '0') {
		return bad("Timestamp")
	}
	ts, err := strconv.ParseInt(vals[1], 10, 64)
	if err != nil {
		return bad("Timestamp")
	}
	p.ts = ts
	if n := len(p.nonce); n < minNonceLen || n > maxNonceLen || !isToken(p.nonce) {
		return bad(fmt.Sprintf("Nonce must be %d-%d characters of A-Z a-z 0-9 - _", minNonceLen, maxNonceLen))
	}
	if len(p.sig) != signatureHexLen || !isLowerHex(p.sig) {
		return bad("Signature must be 64 lower-case hex characters")
	}
	return p, nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTokenByte(c) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerHexByte(c) {
			return false
		}
	}
	return true
}

// NonceStore remembers (key id, nonce) pairs until they expire.
type NonceStore interface {
	// Add records nonce for keyID until expires; it returns ErrReplayed
	// if the pair is already held.
	Add(keyID, nonce string, expires, now time.Time) error
}

// NonceKey is a (key id, nonce) pair as a store keeps it: 16 bytes of
// their SHA-256, which holds no request text.
func NonceKey(keyID, nonce string) []byte {
	k := keyOf(keyID, nonce)
	return k[:]
}

// NonceCache remembers (key id, nonce) pairs until they expire. It is
// bounded: expired entries are evicted on every Add, and when Max live
// entries are held Add refuses with ErrBusy instead of forgetting a nonce
// that could still be replayed. Safe for concurrent use.
type NonceCache struct {
	max     int
	mu      sync.Mutex
	seen    map[nonceKey]int64
	expires nonceHeap
}

// nonceKey identifies a (key id, nonce) pair in 16 bytes, so that the
// cache holds no strings (each would keep the request's whole header).
type nonceKey [16]byte

func keyOf(keyID, nonce string) nonceKey {
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	var k nonceKey
	copy(k[:], h.Sum(nil))
	return k
}

// NewNonceCache returns a cache holding at most max live nonces.
func NewNonceCache(max int) *NonceCache {
	return &NonceCache{max: max, seen: make(map[nonceKey]int64)}
}

// Add records nonce for keyID until expires. It returns ErrReplayed if the
// pair is already held, ErrBusy if the cache is full.
func (c *NonceCache) Add(keyID, nonce string, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evict(now)
	k := keyOf(keyID, nonce)
	if _, ok := c.seen[k]; ok {
		return ErrReplayed
	}
	if len(c.seen) >= c.max {
		return ErrBusy
	}
	c.seen[k] = expires.UnixNano()
	heap.Push(&c.expires, nonceEntry{k, expires.UnixNano()})
	return nil
}

// Len returns the number of nonces held.
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// evict drops entries whose expiry is before now. An entry expiring exactly
// at now is kept: Verify still accepts a timestamp exactly Window old.
func (c *NonceCache) evict(now time.Time) {
	n := now.UnixNano()
	for len(c.expires) > 0 && c.expires[0].at < n {
		e := heap.Pop(&c.expires).(nonceEntry)
		delete(c.seen, e.k)
	}
}

type nonceEntry struct {
	k  nonceKey
	at int64
}

type nonceHeap []nonceEntry

func (h nonceHeap) Len() int           { return len(h) }
func (h nonceHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h nonceHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nonceHeap) Push(x any)        { *h = append(*h, x.(nonceEntry)) }
func (h *nonceHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func isTokenByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func isLowerHexByte(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
