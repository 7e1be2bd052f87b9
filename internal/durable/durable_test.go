package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// names lists dir, so a test can see that no temporary file is left.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func wantNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q (a temporary file left?)", dir, got, want)
	}
}

func wantFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", path, b, content)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != perm {
		t.Errorf("%s has mode %v, want %v", path, st.Mode(), perm)
	}
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := WriteFile(path, []byte("one\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "one\n", 0o640)
	// The replacement takes the mode asked for, not the old file's.
	if err := WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "two", 0o600)
	wantNames(t, dir, "rec.json")
}

func TestWriteFileRelativeToTheWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := WriteFile("boot", []byte("7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "boot"), "7\n", 0o644)
	wantNames(t, dir, "boot")
}

// A rename that fails (the target is a directory) leaves the target as it
// was and no temporary file, and the error names the target.
func TestWriteFileFailingLeavesTheTarget(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "inside"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []byte("new"), 0o640)
	if err == nil {
		t.Fatal("writing over a directory succeeded")
	}
	if !strings.HasPrefix(err.Error(), "durable: write "+path+": rename ") {
		t.Errorf("error %q does not say it is the rename of %s that failed", err, path)
	}
	wantNames(t, dir, "rec.json")
	wantNames(t, path, "inside")
}

func TestWriteFileIntoAMissingDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing", "rec.json")
	err := WriteFile(path, []byte("new"), 0o640)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	wantNames(t, dir)
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := WriteNew(path, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "secret\n", 0o600)

	err := WriteNew(path, []byte("other\n"), 0o600)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("writing a new file over one: %v, want an error naming %s and wrapping fs.ErrExist", err, path)
	}
	wantFile(t, path, "secret\n", 0o600)
	wantNames(t, dir, "key")
}

// A file that appears after WriteNew looked is not replaced either: the
// link into place refuses.
func TestWriteNewLinkRefusesAFileThatAppeared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := write(path, []byte("ours"), 0o600, true) // as if path appeared after the Lstat
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrExist", err)
	}
	wantFile(t, path, "theirs", 0o600)
	wantNames(t, dir, "key")
}
