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
	mu       sync.Mutex
	emit     func(line string, truncated bool)
	partial  []byte
	skipping bool // inside an over-long line whose head was already emitted
}

// NewLines returns a splitter calling emit for every line.
func NewLines(emit func(line string, truncated bool)) *Lines {
	return &Lines{emit: emit}
}

// Write never fails: a child must not see EPIPE because its output was
// uninteresting.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !l.skipping {
			room := MaxLine - len(l.partial)
			if len(chunk) > room {
				l.partial = append(l.partial, chunk[:room]...)
				l.flush(true)
				l.skipping = true
			} else {
				l.partial = append(l.partial, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !l.skipping {
			l.flush(false)
		}
		l.skipping = false
		p = p[i+1:]
	}
	return n, nil
}

// Close emits a final line without a newline, if any.
func (l *Lines) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 && !l.skipping {
		l.flush(false)
	}
	l.skipping = false
	return nil
}

func (l *Lines) flush(truncated bool) {
	line := Clean(l.partial)
	l.partial = l.partial[:0]
	l.emit(line, truncated)
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
