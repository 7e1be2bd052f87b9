package proc

import (
	"bytes"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxLine is the longest line kept; the rest of a longer line is dropped
// and the line is marked truncated. It bounds the memory a child can make
// us hold with one endless line.
const MaxLine = 4096

// Lines is an io.Writer that splits a byte stream into lines and hands each
// to emit, at most MaxLine bytes long, as valid UTF-8 with control
// characters replaced. It holds at most one partial line. Safe for
// concurrent use.
type Lines struct {
	mu    sync.Mutex
	emit  func(line string, truncated bool)
	split splitter
}

// NewLines returns a splitter calling emit for every line.
func NewLines(emit func(line string, truncated bool)) *Lines {
	return &Lines{emit: emit, split: splitter{max: MaxLine}}
}

// Write never fails: a child must not see EPIPE because its output was
// uninteresting.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.split.feed(p, l.emitRaw)
	return len(p), nil
}

// Close emits a final line without a newline, if any.
func (l *Lines) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.split.end(l.emitRaw)
	return nil
}

func (l *Lines) emitRaw(line []byte, truncated bool) { l.emit(Clean(line), truncated) }

// splitter is the line splitting alone: bytes in, lines out, no locking
// and no I/O, so that it can be fuzzed in-process with a small max (a
// 4 KiB limit needs inputs of 4 KiB to reach, and the fuzzer's
// minimization of such inputs is quadratic in their length).
type splitter struct {
	max      int // longest line kept, in bytes
	partial  []byte
	skipping bool // inside an over-long line whose head was already emitted
}

// feed splits p, continuing the line a previous feed left open. The line
// passed to emit is only valid during the call.
func (s *splitter) feed(p []byte, emit func(line []byte, truncated bool)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !s.skipping {
			room := s.max - len(s.partial)
			if len(chunk) > room {
				s.partial = append(s.partial, chunk[:room]...)
				s.flush(true, emit)
				s.skipping = true
			} else {
				s.partial = append(s.partial, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !s.skipping {
			s.flush(false, emit)
		}
		s.skipping = false
		p = p[i+1:]
	}
}

// end emits the unterminated last line, if any.
func (s *splitter) end(emit func(line []byte, truncated bool)) {
	if len(s.partial) > 0 && !s.skipping {
		s.flush(false, emit)
	}
	s.skipping = false
}

func (s *splitter) flush(truncated bool, emit func(line []byte, truncated bool)) {
	emit(s.partial, truncated)
	s.partial = s.partial[:0]
}

// Clean makes child output safe to log: valid UTF-8, no control characters
// (a terminal escape in a log line is an attack on whoever reads it), no
// trailing carriage return.
func Clean(b []byte) string {
	b = bytes.TrimSuffix(b, []byte("\r"))
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			sb.WriteRune(utf8.RuneError)
		case r == '\t':
			sb.WriteByte(' ')
		case unicode.IsControl(r):
			sb.WriteRune(utf8.RuneError)
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}
