package keyfile

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "cluster.key")
	key, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, key, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if want := hex.EncodeToString(key) + "\n"; string(raw) != want {
		t.Errorf("file holds %q, want %q", raw, want)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Error("loaded key differs from the written one")
	}
	other, _ := Generate()
	if bytes.Equal(other, key) {
		t.Error("two generated keys are equal")
	}
}

func TestWriteRefusesOverwriteUnlessForced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.key")
	first, _ := Generate()
	second, _ := Generate()
	if err := Write(path, first, false); err != nil {
		t.Fatal(err)
	}
	err := Write(path, second, false)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Write: %v, want fs.ErrExist", err)
	}
	if want := "keyfile: " + path + ": refusing to overwrite: file already exists"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got, _ := Load(path); !bytes.Equal(got, first) {
		t.Error("refused Write changed the file")
	}
	if err := Write(path, second, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(path); !bytes.Equal(got, second) {
		t.Error("forced Write did not replace the key")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key (temporary files left?)", len(entries))
	}
}

func TestLoadRejects(t *testing.T) {
	good := strings.Repeat("ab", KeySize) + "\n"
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		want    string // after "keyfile: PATH"
	}{
		{"world readable", good, 0o644, " is accessible by group or others (mode 0644); it must be 0600 or stricter: chmod 600 PATH"},
		{"group readable", good, 0o640, " is accessible by group or others (mode 0640); it must be 0600 or stricter: chmod 600 PATH"},
		{"group writable", good, 0o620, " is accessible by group or others (mode 0620); it must be 0600 or stricter: chmod 600 PATH"},
		{"short", strings.Repeat("ab", 16), 0o600, ": key is 16 bytes, want 32"},
		{"long", strings.Repeat("ab", 33), 0o600, ": key is 33 bytes, want 32"},
		{"empty", "", 0o600, ": key is 0 bytes, want 32"},
		{"not hex", strings.Repeat("zz", KeySize), 0o600,
			": not a hex-encoded key (tandem keygen writes one): encoding/hex: invalid byte: U+007A 'z'"},
		{"odd length", strings.Repeat("a", 63), 0o600,
			": not a hex-encoded key (tandem keygen writes one): encoding/hex: odd length hex string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cluster.key")
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			_, err := Load(path)
			want := "keyfile: " + path + strings.ReplaceAll(tt.want, "PATH", path)
			if err == nil || err.Error() != want {
				t.Errorf("Load: %v\nwant: %s", err, want)
			}
		})
	}
}

func TestLoadRejectsDirectoryAndMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || err.Error() != "keyfile: "+dir+" is not a regular file" {
		t.Errorf("Load(dir): %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing): %v, want fs.ErrNotExist", err)
	}
}

func TestTokenRoundTripAndRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.token")
	tok, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 64 {
		t.Errorf("token %q has %d characters, want 64", tok, len(tok))
	}
	if err := WriteToken(path, tok, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteToken(path, tok, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second WriteToken: %v, want fs.ErrExist", err)
	}
	if got, err := LoadToken(path); err != nil || got != tok {
		t.Errorf("LoadToken = %q, %v; want %q", got, err, tok)
	}

	for name, content := range map[string]string{
		"short":  "secret",
		"spaced": strings.Repeat("a", 20) + " " + strings.Repeat("b", 20),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := LoadToken(p); err == nil {
			t.Errorf("LoadToken(%s) accepted %q", name, content)
		}
	}
	os.Chmod(path, 0o604)
	if _, err := LoadToken(path); err == nil || !strings.Contains(err.Error(), "(mode 0604)") {
		t.Errorf("LoadToken of a world-readable file: %v", err)
	}
}

// hkdfReference is RFC 5869 written out with HMAC, to check Derive against.
func hkdfReference(secret, salt, info []byte, n int) []byte {
	if salt == nil {
		salt = make([]byte, sha256.Size)
	}
	ext := hmac.New(sha256.New, salt)
	ext.Write(secret)
	prk := ext.Sum(nil)
	var out, prev []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(sha256.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:n]
}

func TestHKDFReferenceMatchesRFC5869(t *testing.T) {
	// RFC 5869 test case 3: SHA-256, zero-length salt and info.
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	want := "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
	if got := hex.EncodeToString(hkdfReference(ikm, nil, nil, 42)); got != want {
		t.Fatalf("reference HKDF = %s, want %s", got, want)
	}
}

func TestDerive(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	hb := Derive(key, "heartbeat v1")
	if want := hkdfReference(key, nil, []byte("tandem heartbeat v1"), KeySize); !bytes.Equal(hb, want) {
		t.Errorf("Derive = %x, want %x", hb, want)
	}
	if !bytes.Equal(hb, Derive(key, "heartbeat v1")) {
		t.Error("Derive is not deterministic")
	}
	if bytes.Equal(hb, Derive(key, "raft v1")) {
		t.Error("two purposes share a sub-key")
	}
	other := bytes.Repeat([]byte{8}, KeySize)
	if bytes.Equal(hb, Derive(other, "heartbeat v1")) {
		t.Error("two keys share a sub-key")
	}
}
