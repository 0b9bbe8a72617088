package guest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/overlay"
)

// SocketDir holds the guest service's unix socket (engine.SocketName),
// which the local engine binds into its instances.
func SocketDir(stateDir, cloud string) string { return filepath.Join(Dir(stateDir, cloud), "sock") }

// TokenPrefix starts every agent token, so that one found in a log or a
// paste is recognized for what it is.
const TokenPrefix = "hfa_"

// Dir is where a cloud's guest layer keeps its files under stateDir.
func Dir(stateDir, cloud string) string { return filepath.Join(stateDir, cloud, "guest") }

// Credentials are the agent tokens of a cloud's instances.
//
// A token is HMAC-SHA256, under a key derived from the cloud's master key,
// of the instance's ID and its generation; only the generations are kept
// (generations.json), so a copy of the state directory without the master
// key yields no token, and Rotate ends an instance's token by moving its
// generation on.
type Credentials struct {
	key     []byte
	file    string
	sockDir string

	mu    sync.Mutex
	gens  map[string]int // by instance ID; absent = generation 0
	stamp stamp          // which version of the file gens was read from
}

// stamp tells versions of a file apart: atomicfile replaces it, so a new
// version is a new inode.
type stamp struct {
	ino   uint64
	size  int64
	mtime int64
}

// OpenCredentials loads the credentials of cloud under stateDir, creating
// the master key when there is none yet.
func OpenCredentials(stateDir, cloud string) (*Credentials, error) {
	path := overlay.MasterKeyPath(stateDir, cloud)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	master, err := auth.LoadOrCreateMasterKey(path)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, master)
	mac.Write([]byte("holdfast agent tokens v1"))
	c := &Credentials{key: mac.Sum(nil), file: filepath.Join(Dir(stateDir, cloud), "generations.json"),
		sockDir: SocketDir(stateDir, cloud)}
	if _, err := c.generations(); err != nil {
		return nil, err
	}
	return c, nil
}

// generations are the instances' generations as the file has them now:
// another process (holdfast agent rotate) may have rotated a token, and a
// rotation takes effect on the next request, in every process.
func (c *Credentials) generations() (map[string]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.file)
	if errors.Is(err, fs.ErrNotExist) {
		c.gens, c.stamp = map[string]int{}, stamp{}
		return c.gens, nil
	}
	if err != nil {
		return nil, err
	}
	now := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		now.ino = sys.Ino
	}
	if c.gens != nil && now == c.stamp {
		return c.gens, nil
	}
	b, err := os.ReadFile(c.file)
	if err != nil {
		return nil, err
	}
	gens := map[string]int{}
	if err := json.Unmarshal(b, &gens); err != nil {
		return nil, fmt.Errorf("%s: %w", c.file, err)
	}
	c.gens, c.stamp = gens, now
	return gens, nil
}

// Token is the instance's current agent token; empty when the generations
// cannot be read, which no token equals (Identify, Equal): unreadable
// credentials refuse everyone.
func (c *Credentials) Token(id compile.ID) string {
	gens, err := c.generations()
	if err != nil {
		return ""
	}
	return c.token(id, gens[id.String()])
}

func (c *Credentials) token(id compile.ID, gen int) string {
	mac := hmac.New(sha256.New, c.key)
	mac.Write([]byte(id.String() + "\x00" + strconv.Itoa(gen)))
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Generation is how often the instance's token has been rotated.
func (c *Credentials) Generation(id compile.ID) int {
	gens, _ := c.generations()
	return gens[id.String()]
}

// Rotate gives the instance a new token; the old one is refused from now
// on. The engine delivers the new one on the next apply.
func (c *Credentials) Rotate(id compile.ID) error {
	gens, err := c.generations()
	if err != nil {
		return err
	}
	next := maps.Clone(gens)
	next[id.String()]++
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.file), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(c.file, append(b, '\n'), 0o600)
}

// SocketDir is where the cloud's guest service listens for local instances.
func (c *Credentials) SocketDir() string { return c.sockDir }

// Identify finds which of ids token belongs to. Every candidate is
// compared, in constant time, whatever matched, so the time taken says
// nothing of how close a guess was or which instance it hit.
func (c *Credentials) Identify(token string, ids []compile.ID) (compile.ID, bool) {
	gens, err := c.generations()
	if err != nil || !strings.HasPrefix(token, TokenPrefix) {
		return compile.ID{}, false
	}
	var found compile.ID
	hit := 0
	for _, id := range ids {
		want := c.token(id, gens[id.String()])
		if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
			found, hit = id, 1
		}
	}
	return found, hit == 1
}

// Equal reports whether token is the instance's current one, in constant
// time: an engine checks the token an instance holds with it.
func (c *Credentials) Equal(id compile.ID, token string) bool {
	want := c.Token(id)
	return want != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}
