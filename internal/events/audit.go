package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Log is the append-only audit log: one JSON object per line. It is a Sink.
// Entries older than the retention are dropped by Compact, which the agent
// runs at start and daily; the file is rewritten atomically.
//
// Several processes may share one file (the agent, and `tandem raid serve`
// publishing RAID events into the agent's log). Each append and each
// compaction holds an exclusive flock on the file, and an appender whose
// file was replaced by a compaction reopens the path first, so no event is
// written to a file already renamed away or lost while another process
// rewrites it.
type Log struct {
	mu        sync.Mutex
	path      string
	f         *os.File
	retention time.Duration
	now       func() time.Time
	err       error
}

// OpenLog opens (creating if needed) the audit log at path.
func OpenLog(path string, retention time.Duration) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	l := &Log{path: path, f: f, retention: retention, now: time.Now}
	if err := l.terminateTornLine(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// terminateTornLine ends a last line cut short by a crash, so the next event
// starts on a line of its own.
func (l *Log) terminateTornLine() error {
	st, err := l.f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	r, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	defer r.Close()
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, st.Size()-1); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if last[0] != '\n' {
		_, err = l.f.Write([]byte("\n"))
	}
	return err
}

// Publish appends e. A write error is kept and returned by Err and Close;
// the cluster does not stop because its audit disk is full.
func (l *Log) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := l.lockCurrentLocked()
	if err != nil {
		if l.err == nil {
			l.err = err
		}
		return
	}
	defer unlock()
	if _, err := l.f.Write(b); err != nil && l.err == nil {
		l.err = fmt.Errorf("events: append to %s: %w", l.path, err)
	}
}

// Err returns the first write error, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Compact drops entries older than the retention.
func (l *Log) Compact() error {
	if l.retention <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := l.lockCurrentLocked()
	if err != nil {
		return err
	}
	defer unlock()
	cutoff := l.now().Add(-l.retention)
	in, err := os.ReadFile(l.path)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	var out bytes.Buffer
	dropped := 0
	for _, line := range bytes.SplitAfter(in, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Event
		if json.Unmarshal(line, &e) != nil || e.Time.Before(cutoff) {
			dropped++ // expired, or a line torn by a crash
			continue
		}
		out.Write(line)
	}
	if dropped == 0 {
		return nil
	}
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o640); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	// l.f (the old file) stays open, and locked, until unlock: appenders of
	// other processes waiting on it then find the path replaced and reopen,
	// as this Log's next append does.
	return nil
}

// lockCurrentLocked takes the flock of the file now at l.path, reopening
// l.f first when a compaction (of this or another process) replaced it. The
// returned func releases the lock.
func (l *Log) lockCurrentLocked() (func(), error) {
	for tries := 0; ; tries++ {
		if !l.isCurrentLocked() {
			f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
			if err != nil {
				return nil, fmt.Errorf("events: reopen %s: %w", l.path, err)
			}
			l.f.Close()
			l.f = f
		}
		fd := int(l.f.Fd())
		if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
			// A file system without locks: append unlocked, as before.
			return func() {}, nil
		}
		if l.isCurrentLocked() || tries >= 10 {
			return func() { syscall.Flock(fd, syscall.LOCK_UN) }, nil
		}
		syscall.Flock(fd, syscall.LOCK_UN) // replaced while we waited: again
	}
}

// isCurrentLocked reports whether l.f is the file at l.path.
func (l *Log) isCurrentLocked() bool {
	pi, err := os.Stat(l.path)
	if err != nil {
		return false
	}
	fi, err := l.f.Stat()
	return err == nil && os.SameFile(pi, fi)
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cerr := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return cerr
}

// Filter selects events when reading a log. Zero fields match everything.
type Filter struct {
	Since   time.Time
	Until   time.Time
	Kinds   []Kind
	Group   string
	Subject string
	Node    string
	Limit   int // keep the newest Limit events
}

// Match reports whether e passes the filter (Limit aside).
func (f Filter) Match(e Event) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && e.Time.After(f.Until) {
		return false
	}
	if f.Group != "" && e.Group != f.Group {
		return false
	}
	if f.Subject != "" && e.Subject != f.Subject {
		return false
	}
	if f.Node != "" && e.Node != f.Node {
		return false
	}
	if len(f.Kinds) > 0 {
		ok := false
		for _, k := range f.Kinds {
			ok = ok || k == e.Kind
		}
		return ok
	}
	return true
}

// Read returns the events of r that pass f, oldest first. Lines that are not
// valid events (a torn last line after a crash) are skipped.
func Read(r io.Reader, f Filter) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Kind == "" {
			continue
		}
		if f.Match(e) {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("events: %w", err)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// ReadFile reads the log at path with f.
func ReadFile(path string, f Filter) ([]Event, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer file.Close()
	return Read(file, f)
}
