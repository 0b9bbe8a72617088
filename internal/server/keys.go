package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/tenant"
)

// keyCache holds opened API-key secrets so that a signed request costs a
// map lookup, not a database read and a decryption. Revocation and
// rotation go through this server, which forgets the key at once.
type keyCache struct {
	s  *Server
	mu sync.Mutex
	m  map[string]*cachedKey
}

type cachedKey struct {
	secret   []byte
	userID   int64
	expires  time.Time // zero: never
	lastSeen time.Time // last time last_used_at was written
}

func (c *keyCache) load(id string) (*cachedKey, bool) {
	c.mu.Lock()
	k, ok := c.m[id]
	c.mu.Unlock()
	if !ok {
		var rec tenant.APIKeyRecord
		err := c.s.db.Do(context.Background(), func(tx *tenant.Tx) error {
			var err error
			rec, err = tx.APIKey(id)
			return err
		})
		if err != nil || rec.Revoked {
			return nil, false
		}
		secret, err := c.s.box.Open(rec.Sealed, keyAD(id))
		if err != nil {
			c.s.log.Error("API key does not open under the master key", "key", id)
			return nil, false
		}
		k = &cachedKey{secret: secret, userID: rec.UserID}
		if rec.ExpiresAt != nil {
			k.expires = *rec.ExpiresAt
		}
		if rec.LastUsedAt != nil {
			k.lastSeen = *rec.LastUsedAt
		}
		c.mu.Lock()
		if len(c.m) > 100000 {
			clear(c.m) // bounded: reloading is cheap
		}
		c.m[id] = k
		c.mu.Unlock()
	}
	if !k.expires.IsZero() && !c.s.now().Before(k.expires) {
		return nil, false
	}
	return k, true
}

// secret is the HMAC verifier's lookup.
func (c *keyCache) secret(id string) ([]byte, bool) {
	k, ok := c.load(id)
	if !ok {
		return nil, false
	}
	return k.secret, true
}

func (c *keyCache) get(id string) (*cachedKey, bool) { return c.load(id) }

// used records a key's use, at most once a minute per key: a write per
// request would cost more than the request.
func (c *keyCache) used(id string) {
	now := c.s.now()
	c.mu.Lock()
	k, ok := c.m[id]
	due := ok && now.Sub(k.lastSeen) > time.Minute
	if due {
		k.lastSeen = now
	}
	c.mu.Unlock()
	if due {
		err := c.s.db.Do(context.Background(), func(tx *tenant.Tx) error { return tx.TouchAPIKey(id) })
		if err != nil {
			c.s.log.Error("recording API key use", "key", id, "err", err)
		}
	}
}

func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
