// Package keyfile owns the secrets tandem keeps in files: the cluster key
// (32 random bytes, hex-encoded) that authenticates and encrypts all traffic
// between nodes, and the bearer token of the TCP control API. It generates
// them, writes them owner-only without ever replacing one by accident, loads
// them refusing files others may read, and derives purpose-bound sub-keys
// with HKDF-SHA256 so one key file serves several protocols. It imports
// only internal/durable, which writes the files; anything may import it.
package keyfile

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"tandem/internal/durable"
)

// KeySize is the length of a cluster key: an AES-256 key.
const KeySize = 32

// MinTokenLen is the shortest API token Load accepts: 128 bits as hex.
const MinTokenLen = 32

// maxFileSize bounds what Load reads: a key file is 65 bytes.
const maxFileSize = 4096

// Generate returns a new random cluster key.
func Generate() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	return key, nil
}

// GenerateToken returns a new random API bearer token (64 hex digits).
func GenerateToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("keyfile: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Write stores key hex-encoded at path with mode 0600. It refuses to replace
// an existing file (the error wraps fs.ErrExist) unless force is set: a new
// cluster key locks out every node that still has the old one.
func Write(path string, key []byte, force bool) error {
	if len(key) != KeySize {
		return fmt.Errorf("keyfile: key is %d bytes, want %d", len(key), KeySize)
	}
	return writeSecret(path, []byte(hex.EncodeToString(key)+"\n"), force)
}

// WriteToken stores an API token at path with mode 0600, like Write.
func WriteToken(path, token string, force bool) error {
	if err := checkToken(path, token); err != nil {
		return err
	}
	return writeSecret(path, []byte(token+"\n"), force)
}

// writeSecret writes data durably to path with mode 0600: renamed into
// place (force) or linked there (no force), so path never holds a partial
// secret and an existing file is never clobbered by a race.
func writeSecret(path string, data []byte, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	write := durable.WriteNew
	if force {
		write = durable.WriteFile
	}
	err := write(path, data, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keyfile: %s: refusing to overwrite: %w", path, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}

// Load reads the cluster key at path. It refuses a file that group or others
// may access, that is not a regular file, or that does not hold exactly
// KeySize hex-encoded bytes.
func Load(path string) ([]byte, error) {
	data, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(string(data))
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: not a hex-encoded key (tandem keygen writes one): %w", path, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("keyfile: %s: key is %d bytes, want %d", path, len(key), KeySize)
	}
	return key, nil
}

// LoadSecret reads a secret that is not tandem's own (a webhook's bearer
// token) at path, with Load's checks on the file: it must be private. Its
// content is the caller's to judge; it must not be empty or span lines.
func LoadSecret(path string) (string, error) {
	data, err := readSecret(path)
	if err != nil {
		return "", err
	}
	s := string(data)
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("keyfile: %s: want one line, not empty", path)
	}
	return s, nil
}

// LoadToken reads the API token at path, with Load's checks on the file.
func LoadToken(path string) (string, error) {
	data, err := readSecret(path)
	if err != nil {
		return "", err
	}
	token := string(data)
	if err := checkToken(path, token); err != nil {
		return "", err
	}
	return token, nil
}

func checkToken(path, token string) error {
	if len(token) < MinTokenLen {
		return fmt.Errorf("keyfile: %s: token is %d characters, want at least %d (tandem keygen --token makes one)",
			path, len(token), MinTokenLen)
	}
	for _, r := range token {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("keyfile: %s: token holds a space, a control or a non-ASCII character", path)
		}
	}
	return nil
}

// readSecret returns the content of path without surrounding white space,
// after checking the file is private.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat() // of the file opened, not of whatever path names now
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keyfile: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keyfile: %s is accessible by group or others (mode %04o); it must be 0600 or stricter: chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("keyfile: %s is larger than %d bytes; not a tandem secret", path, maxFileSize)
	}
	return bytes.TrimSpace(data), nil
}

// Derive returns a 32-byte sub-key of key for one purpose (for example
// "heartbeat v1" or "raft v1"), by HKDF-SHA256 with the purpose as info. Keys
// for different purposes are independent, so one protocol's nonces or
// messages can never be replayed into another.
func Derive(key []byte, purpose string) []byte {
	sub, err := hkdf.Key(sha256.New, key, nil, "tandem "+purpose, KeySize)
	if err != nil {
		panic("keyfile: hkdf: " + err.Error()) // only for lengths over 255 × 32
	}
	return sub
}
