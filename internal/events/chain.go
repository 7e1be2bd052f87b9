package events

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// The audit log is JSON lines, one record per line: an Event's fields and
// its link in a hash chain. Entry n carries "seq": n and "prev": the SHA-256
// (lowercase hex) of the bytes of entry n-1's line, newline excluded; the
// first entry of a log has seq 1 and no prev. Changing, removing, inserting
// or reordering an entry therefore breaks the link after it.
//
// Compaction drops the oldest entries and writes, as the new first line, a
// checkpoint (kind log_checkpoint) that stands for the last entry it
// dropped: its "time", "seq" and "hash" are that entry's time, seq and
// hash, so the first kept entry links to it.
//
// Entries written before the chain existed have neither seq nor prev; they
// may only precede the chain.
type record struct {
	Event
	Seq  uint64 `json:"seq,omitempty"`
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"` // only in a checkpoint: the hash of the entry it stands for
}

// MaxLine is the longest line the audit log reads, in bytes. Publish
// shortens an event that would be longer.
const MaxLine = 1 << 20

func (r *record) checkpoint() bool { return r.Kind == LogCheckpoint }

// chained reports whether r carries a link (it was written with the chain).
func (r *record) chained() bool { return r.Seq != 0 || r.Prev != "" }

// linkAfter is the link an entry following r (whose line is raw) carries.
func (r *record) linkAfter(raw []byte) Link {
	if r.checkpoint() {
		return Link{Seq: r.Seq, Hash: r.Hash}
	}
	return Link{Seq: r.Seq, Hash: lineHash(raw)}
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func lineHash(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:])
}

// errTooLong marks a line longer than MaxLine.
var errTooLong = fmt.Errorf("longer than %d bytes", MaxLine)

// parseRecord reads one line (without its newline).
func parseRecord(raw []byte) (record, error) {
	var r record
	if len(raw) > MaxLine {
		return r, errTooLong
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("not a JSON event: %w", err)
	}
	if r.Kind == "" {
		return r, errors.New("not an event: no kind")
	}
	if r.checkpoint() && !hashRE.MatchString(r.Hash) {
		return r, errors.New("a checkpoint without the hash of the entry it stands for")
	}
	return r, nil
}

// BadLine is a line of the log that is not an entry: torn by a crash,
// cut short, longer than MaxLine, or not written by tandem.
type BadLine struct {
	Line   int    // 1-based
	Reason string // why it was skipped
}

func (b BadLine) String() string { return fmt.Sprintf("line %d: %s", b.Line, b.Reason) }

// ParseBadLine reads the form String prints.
func ParseBadLine(s string) (BadLine, bool) {
	var b BadLine
	num, reason, ok := strings.Cut(strings.TrimPrefix(s, "line "), ": ")
	if !ok || !strings.HasPrefix(s, "line ") {
		return b, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return b, false
	}
	return BadLine{Line: n, Reason: reason}, true
}

// lineReader reads a log line by line, however long its lines are: a line
// longer than MaxLine is skipped without being held in memory.
type lineReader struct {
	r   *bufio.Reader
	num int
	buf []byte
}

// next returns the next line without its newline and its number. A line
// longer than MaxLine comes back as nil with errTooLong; the last line of
// the input may lack its newline. At the end it returns io.EOF.
func (lr *lineReader) next() ([]byte, int, error) {
	lr.buf = lr.buf[:0]
	size, tooLong := 0, false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		size += len(chunk)
		if !tooLong {
			if size > MaxLine+1 {
				tooLong, lr.buf = true, lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case err == nil || (errors.Is(err, io.EOF) && size > 0):
			lr.num++
			line := bytes.TrimSuffix(lr.buf, []byte("\n"))
			if tooLong || len(line) > MaxLine {
				return nil, lr.num, errTooLong
			}
			return line, lr.num, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, lr.num, err
		}
	}
}

// lastLink finds the link the next entry of a log of size bytes must carry:
// that of its last entry, skipping bad lines; zero when it has none. It
// reads backwards from the end, so appending costs the same however long
// the log is. terminated reports whether the log ends with a newline (or is
// empty); if not, its last line was torn and the next entry must start on a
// line of its own.
func lastLink(r io.ReaderAt, size int64) (l Link, terminated bool, err error) {
	if size == 0 {
		return Link{}, true, nil
	}
	var last [1]byte
	if _, err := r.ReadAt(last[:], size-1); err != nil {
		return Link{}, false, err
	}
	terminated = last[0] == '\n'
	end := size
	if terminated {
		end--
	}
	for {
		start, err := lineStart(r, end)
		if err != nil {
			return Link{}, terminated, err
		}
		if end-start <= MaxLine {
			raw := make([]byte, end-start)
			if _, err := r.ReadAt(raw, start); err != nil {
				return Link{}, terminated, err
			}
			if rec, err := parseRecord(raw); err == nil {
				return rec.linkAfter(raw), terminated, nil
			}
		}
		if start == 0 {
			return Link{}, terminated, nil
		}
		end = start - 1 // before that line's newline
	}
}

// lineStart returns where the line that ends at end begins.
func lineStart(r io.ReaderAt, end int64) (int64, error) {
	buf := make([]byte, 32<<10)
	for pos := end; pos > 0; {
		n := min(int64(len(buf)), pos)
		if _, err := r.ReadAt(buf[:n], pos-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return pos - n + int64(i) + 1, nil
		}
		pos -= n
	}
	return 0, nil
}
