package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/tenant"
)

// keyCache holds opened API-key secrets, so that checking a signature
// costs a map lookup, not a database read and a decryption. It holds
// nothing else, because nothing else about a key is fixed: the secret of a
// key id never changes (rotation makes a new id), but whether the key is
// still live and whose it is are read from the database on every request
// (authenticate), so that revoking or rotating a key, or deleting its
// user — through this process, another one, or the database itself —
// takes effect on the very next request.
type keyCache struct {
	s  *Server
	mu sync.Mutex
	m  map[string]*cachedKey
}

// cachedKey is what may be kept of a key: what it cannot change.
type cachedKey struct {
	secret []byte
}

// maxCachedKeys bounds the cache; reloading a key is cheap.
const maxCachedKeys = 100000

// secret is the HMAC verifier's lookup: the key's secret, if the key
// exists and was live when it was opened.
func (c *keyCache) secret(id string) ([]byte, bool) {
	c.mu.Lock()
	k, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return k.secret, true
	}
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
	c.mu.Lock()
	if len(c.m) >= maxCachedKeys {
		clear(c.m)
	}
	c.m[id] = &cachedKey{secret: secret}
	c.mu.Unlock()
	return secret, true
}

// forget is told of a key this process revoked (or rotated out). Its
// requests are refused anyway; its secret has no reason to stay in
// memory, and its event streams end now.
func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
	c.s.hub.keyChanged(id)
}

// liveKey checks that a key just read may act now: not revoked, not
// expired (and of a user who exists: a user's keys go with them). It
// records the key's use at most once a minute: a write per request would
// cost more than the request.
func (s *Server) liveKey(tx *tenant.Tx, k tenant.APIKeyRecord) error {
	now := s.now()
	if k.Revoked || (k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)) {
		return tenant.ErrNotFound
	}
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) > time.Minute {
		return tx.TouchAPIKey(k.ID, now)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
