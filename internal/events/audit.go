package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/internal/durable"
)

// Log is the append-only audit log: one JSON object per line, each entry
// linked to the one before it by a hash chain (see record). It is a Sink.
// Entries older than the retention are dropped by Compact, which the agent
// runs at start and daily; the file is rewritten atomically, starting with a
// checkpoint that carries the chain on.
//
// Several processes may share one file (the agent, and `tandem raid serve`
// publishing RAID events into the agent's log). Each append and each
// compaction holds an exclusive flock on the file, and an appender whose
// file was replaced by a compaction reopens the path first, so no event is
// written to a file already renamed away or lost while another process
// rewrites it. Under the lock an appender reads the chain's end from the
// file itself (unless the file is as this Log left it), so entries of
// several processes form one chain, and it starts a new line if the file
// ends in a line torn by a process that crashed mid-append.
type Log struct {
	mu        sync.Mutex
	path      string
	f         *os.File
	retention time.Duration
	now       func() time.Time
	err       error
	end       chainEnd // the file's end as this Log's last append left it
}

// chainEnd remembers where the chain ended after this Log's last append,
// so the next one need not read the file when nobody else wrote to it.
type chainEnd struct {
	file os.FileInfo // nil: unknown
	size int64
	link Link
}

// OpenLog opens (creating if needed) the audit log at path.
func OpenLog(path string, retention time.Duration) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return &Log{path: path, f: f, retention: retention, now: time.Now}, nil
}

// openAppend opens the log for appending, and for reading its end.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o640)
}

// Publish appends e. A write error is kept and returned by Err and Close;
// the cluster does not stop because its audit disk is full.
func (l *Log) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	unlock, err := l.lockCurrentLocked()
	if err != nil {
		l.keepErr(err)
		return
	}
	defer unlock()
	if err := l.appendLocked(e); err != nil {
		l.keepErr(err)
	}
}

func (l *Log) keepErr(err error) {
	if l.err == nil {
		l.err = err
	}
}

// appendLocked writes e as the next entry of the chain, on a line of its
// own. The caller holds the file's lock.
func (l *Log) appendLocked(e Event) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	prev, terminated := l.end.link, true
	if l.end.file == nil || !os.SameFile(l.end.file, st) || l.end.size != st.Size() {
		// Another process appended or compacted, or this is our first.
		// A log whose end cannot be read still gets the event, unlinked;
		// --verify will point at it.
		prev, terminated, err = lastLink(l.f, st.Size())
		if err != nil {
			l.keepErr(fmt.Errorf("events: read the end of %s: %w", l.path, err))
		}
	}
	l.end.file = nil
	line := encodeRecord(record{Event: e, Seq: prev.Seq + 1, Prev: prev.Hash})
	var buf []byte
	if !terminated {
		buf = append(buf, '\n') // a torn line ends here; it stays, as evidence
	}
	buf = append(append(buf, line...), '\n')
	n, err := l.f.Write(buf)
	if err != nil {
		return fmt.Errorf("events: append to %s: %w", l.path, err)
	}
	l.end = chainEnd{file: st, size: st.Size() + int64(n), link: Link{Seq: prev.Seq + 1, Hash: lineHash(line)}}
	return nil
}

// encodeRecord writes r as one line (without its newline) of at most
// MaxLine bytes: an event too long for that, or that cannot be encoded, is
// written shortened, saying so, rather than lost.
func encodeRecord(r record) []byte {
	b, err := json.Marshal(r)
	if err == nil && len(b) <= MaxLine {
		return b
	}
	why := fmt.Sprintf("event of %d bytes shortened to fit the audit log", len(b))
	if err != nil {
		why = fmt.Sprintf("event shortened: it could not be encoded: %v", err)
	}
	e := r.Event
	r.Event = Event{Time: e.Time, Kind: e.Kind, Node: cut(e.Node), Subject: cut(e.Subject), Group: cut(e.Group),
		Epoch: e.Epoch, Actor: cut(e.Actor), Message: cut(e.Message), Attrs: map[string]any{"truncated": why}}
	b, _ = json.Marshal(r)
	return b
}

// cut shortens a field of an event too long for the log.
func cut(s string) string {
	const max = 4 << 10
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

// Err returns the first write error, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Compact drops the entries older than the retention from the start of the
// log and writes in their place one checkpoint entry that says what was
// dropped and stands for the last dropped entry in the chain. Only a prefix
// is dropped: an entry older than the retention that follows a newer one
// (a clock stepped back) waits until the newer one goes too, so the chain
// stays whole. Lines that are not entries are dropped with the entries
// around them, and counted in the checkpoint; elsewhere they stay.
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
	lines := bytes.SplitAfter(in, []byte("\n"))
	cut, entries, bad := -1, 0, 0
	var last Link
	var lastTime time.Time
	for i, line := range lines {
		raw := bytes.TrimSuffix(line, []byte("\n"))
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		r, err := parseRecord(raw)
		if err != nil || r.checkpoint() {
			continue // dropped with the entries around it; a checkpoint's time is that of the compaction
		}
		if !r.Time.Before(cutoff) {
			break
		}
		cut, last, lastTime = i, r.linkAfter(raw), r.Time
	}
	for _, line := range lines[:cut+1] {
		raw := bytes.TrimSuffix(line, []byte("\n"))
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		if r, err := parseRecord(raw); err != nil {
			bad++
		} else if !r.checkpoint() {
			entries++
		}
	}
	if entries == 0 {
		return nil // nothing expired but an earlier checkpoint
	}
	var out bytes.Buffer
	// The checkpoint takes the place of the last dropped entry, its seq
	// and its time, so the log still reads in order of time.
	now := l.now()
	cp := record{Event: Event{Time: lastTime, Kind: LogCheckpoint, Message: checkpointMessage(now, entries, bad, cutoff),
		Attrs: map[string]any{"dropped": entries, "dropped_unreadable": bad, "before": rfc3339(cutoff), "compacted_at": rfc3339(now)}},
		Seq: last.Seq, Hash: last.Hash}
	out.Write(encodeRecord(cp))
	out.WriteByte('\n')
	for _, line := range lines[cut+1:] {
		out.Write(line)
	}
	if err := durable.WriteFile(l.path, out.Bytes(), 0o640); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	l.end.file = nil
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
			f, err := openAppend(l.path)
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

// Result is what Scan read from a log.
type Result struct {
	Events   []Event   // the entries that pass the filter, oldest first
	Lines    int       // lines read
	Bad      []BadLine // the first lines that are not entries
	BadCount int       // all of them
}

// Scan reads the events of r that pass f, oldest first. A line that is not
// an entry (torn by a crash, longer than MaxLine, not JSON) is skipped and
// reported in Bad; the rest are read all the same.
func Scan(r io.Reader, f Filter) (Result, error) {
	var res Result
	lr := lineReader{r: bufio.NewReaderSize(r, 64<<10)}
	for {
		raw, num, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, errTooLong) {
			return res, fmt.Errorf("events: %w", err)
		}
		res.Lines = num
		var rec record
		if err == nil {
			if len(bytes.TrimSpace(raw)) == 0 {
				continue
			}
			rec, err = parseRecord(raw)
		}
		if err != nil {
			res.BadCount++
			if len(res.Bad) < maxReported {
				res.Bad = append(res.Bad, BadLine{Line: num, Reason: err.Error()})
			}
			continue
		}
		if f.Match(rec.Event) {
			res.Events = append(res.Events, rec.Event)
		}
	}
	if f.Limit > 0 && len(res.Events) > f.Limit {
		res.Events = res.Events[len(res.Events)-f.Limit:]
	}
	return res, nil
}

// Read returns the events of r that pass f, oldest first, skipping lines
// that are not entries (see Scan, which reports them).
func Read(r io.Reader, f Filter) ([]Event, error) {
	res, err := Scan(r, f)
	return res.Events, err
}

// ScanFile scans the log at path with f.
func ScanFile(path string, f Filter) (Result, error) {
	file, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("events: %w", err)
	}
	defer file.Close()
	return Scan(file, f)
}

// ReadFile reads the log at path with f.
func ReadFile(path string, f Filter) ([]Event, error) {
	res, err := ScanFile(path, f)
	return res.Events, err
}
