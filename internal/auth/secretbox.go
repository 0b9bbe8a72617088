package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// MasterKeyLen is the size of the AES-256 master key.
const MasterKeyLen = 32

// boxV1 marks AES-256-GCM with a 12-byte random nonce under the master key.
// A new algorithm or key gets a new version, so old rows still open while
// they are re-sealed.
const boxV1 byte = 1

// ErrOpen means a sealed secret could not be opened: wrong key, wrong
// associated data, unknown version, or tampered bytes. The causes are not
// told apart on purpose.
var ErrOpen = errors.New("cannot open sealed secret")

// Box seals secrets at rest (API-key secrets, TOTP seeds, signing keys)
// with AES-256-GCM under a master key. Safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box for a 32-byte master key.
func NewBox(masterKey []byte) (*Box, error) {
	if len(masterKey) != MasterKeyLen {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(masterKey), MasterKeyLen)
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext as version(1) || nonce(12) || ciphertext+tag.
// associatedData names the secret's owner (e.g. "apikey:hk_..."), so a
// sealed value copied into another row does not open there. The version
// byte is authenticated too.
func (b *Box) Seal(plaintext, associatedData []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+b.aead.Overhead())
	out[0] = boxV1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:1+ns], plaintext, boxAD(boxV1, associatedData)), nil
}

// Open decrypts what Seal returned for the same associatedData.
func (b *Box) Open(ciphertext, associatedData []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(ciphertext) < 1+ns+b.aead.Overhead() || ciphertext[0] != boxV1 {
		return nil, ErrOpen
	}
	pt, err := b.aead.Open(nil, ciphertext[1:1+ns], ciphertext[1+ns:], boxAD(ciphertext[0], associatedData))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func boxAD(version byte, ad []byte) []byte {
	return append([]byte{version}, ad...)
}

// LoadOrCreateMasterKey reads the 32-byte master key at path, or creates
// one if the file does not exist. An existing file must be a regular file
// (not a symlink) owned by the current user with no group or other
// permissions, else it is refused: a key others can read protects nothing.
// Creation is atomic: the key is written and synced to a temporary file
// and hard-linked into place, so a crash or a concurrent creator never
// leaves a partial key, and the first creator wins.
func LoadOrCreateMasterKey(path string) ([]byte, error) {
	key, err := readMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, MasterKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".masterkey-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMasterKey(path) // another process created it first
		}
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable
		d.Close()
	}
	return key, nil
}

func readMasterKey(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("master key %s: %w (a symlink is refused)", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key %s: mode %#o lets others read it; chmod 600 it", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("master key %s: owned by uid %d, not the current user (uid %d)", path, st.Uid, os.Getuid())
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, MasterKeyLen+1)); err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if buf.Len() != MasterKeyLen {
		return nil, fmt.Errorf("master key %s: %d bytes, want exactly %d", path, buf.Len(), MasterKeyLen)
	}
	return buf.Bytes(), nil
}
