// Package durable owns the one way tandem replaces a small file so that a
// crash leaves either the old content or the new, never a torn or empty
// file, and a return without error means the new content survives a power
// loss: the data goes to a temporary file in the target's directory, which
// is given its mode, synced and closed, then renamed (or, for WriteNew,
// linked) over the target, and the directory is synced so the new entry is
// on disk too. State records, boot numbers, secrets, markers and the
// compacted audit log are written this way.
//
// It does not create the directory: callers choose its mode. It imports no
// tandem package; any package that writes files may import it.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, with mode exactly perm whatever the
// umask. On an error the target is as it was, unless only the final sync
// of the directory failed (the error says so): then path holds data, which
// may not survive a crash. No temporary file is left behind, unless the
// process dies while writing one (it is named .BASE.*.tmp).
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, false)
}

// WriteNew is WriteFile for a file that must not exist yet: it fails, with
// an error that wraps fs.ErrExist, when anything is at path, even if it
// appears while data is written (the temporary file is linked into place,
// not renamed).
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("durable: write %s: %w", path, fs.ErrExist)
	}
	return write(path, data, perm, true)
}

// write writes data to a temporary file beside path and renames it, or
// links it, into place. The errors of os name the step and the file.
func write(path string, data []byte, perm fs.FileMode, link bool) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // CreateTemp made it 0600 less the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && link {
		err = os.Link(tmp, path)
	} else if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("durable: write %s: %w", path, err)
	}
	if link {
		// Before the directory's sync, so the name cannot come back. Should
		// it fail, path still holds data; a stray .tmp file is no reason to
		// fail the write.
		os.Remove(tmp)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("durable: write %s: in place, but maybe not durably: %w", path, err)
	}
	return nil
}

// syncDir syncs the directory dir, so that the entries just renamed,
// linked or removed in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		// The file system does not sync directories (some FUSE and
		// network ones): its renames are as durable as it makes them, and
		// refusing the write would only stop the agent from starting.
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
