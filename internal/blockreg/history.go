// Package blockreg is a block-register workload for a replicated volume
// seen through NBD, and its checker: a few blocks of the export, each a
// register holding the number of the write that last wrote it. Clients
// stamp every write with a number no other write has, flush it, and read
// blocks back; every operation is recorded with its call and return
// times and its outcome. Check says whether the history is linearizable
// (porcupine, one register per block) and Lost which acknowledged writes
// the final state surely lacks.
//
// The client (Run) is run by the hidden `tandem bench-register-client` on
// the test bed's client host; e2e reads its history back. Only cmd/tandem
// and the tests import this package.
package blockreg

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
)

// Outcome is how an operation ended.
type Outcome string

const (
	OK Outcome = "ok"
	// Failed: the server answered an error or the connection broke. A
	// write that failed may still have taken effect, at any time after
	// its call.
	Failed Outcome = "failed"
	// TimedOut: no answer within the client's timeout (the connection was
	// then closed); for a write, as Failed.
	TimedOut Outcome = "timeout"
)

// Op is one operation of the history. Times are Unix nanoseconds of the
// host's clock, which every namespace of the bed shares.
type Op struct {
	Client int     `json:"c"`
	Write  bool    `json:"w,omitempty"`
	Final  bool    `json:"final,omitempty"` // a read of the final check
	Block  int     `json:"b"`
	Value  uint64  `json:"v"` // a write's number; what an OK read found
	Call   int64   `json:"call"`
	Return int64   `json:"ret"`
	Result Outcome `json:"o"`
	Err    string  `json:"err,omitempty"`
}

// Unknown reports whether the operation's effect is unknown: a write that
// did not return OK.
func (o Op) Unknown() bool { return o.Result != OK }

// Bad is what a read of a block that no single write left whole decodes
// to (torn, mixed, or foreign data).
const Bad = math.MaxUint64

// Encode fills a block of size n with write v's pattern: every 8-byte word
// derived from v and its position, so a block mixing two writes decodes
// to no write at all.
func Encode(v uint64, n int) []byte {
	b := make([]byte, n)
	for j := 0; j+8 <= n; j += 8 {
		binary.LittleEndian.PutUint64(b[j:], word(v, j))
	}
	return b
}

func word(v uint64, j int) uint64 {
	if j == 0 {
		return v
	}
	return v*0x9E3779B97F4A7C15 ^ uint64(j)*0xBF58476D1CE4E5B9
}

// Decode says which write a block holds: 0 for never written (zeroes),
// Bad for anything else that is not one write's whole pattern.
func Decode(b []byte) uint64 {
	v := binary.LittleEndian.Uint64(b)
	for j := 0; j+8 <= len(b); j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		if v == 0 && w != 0 || v != 0 && w != word(v, j) {
			return Bad
		}
	}
	return v
}

// Recorder writes operations as JSON lines, one write per operation, so
// a reader of the file sees each as soon as it is recorded.
type Recorder struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func NewRecorder(w io.Writer) *Recorder { return &Recorder{w: w} }

// Record appends op; the first error sticks and is returned by Err.
func (r *Recorder) Record(op Op) {
	b, _ := json.Marshal(op)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		_, r.err = r.w.Write(append(b, '\n'))
	}
}

func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Parse reads a history; a last line cut short (the client was writing
// it) is left out.
func Parse(r io.Reader) ([]Op, error) {
	var ops []Op
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			if len(sc.Bytes()) > 0 && sc.Bytes()[len(sc.Bytes())-1] != '}' {
				break
			}
			return ops, fmt.Errorf("blockreg: history line %d: %w", line, err)
		}
		ops = append(ops, op)
	}
	return ops, sc.Err()
}

// ReadFile reads the history in the files named, in order.
func ReadFile(paths ...string) ([]Op, error) {
	var all []Op
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("blockreg: %w", err)
		}
		ops, err := Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("blockreg: %s: %w", p, err)
		}
		all = append(all, ops...)
	}
	return all, nil
}

// Stats counts what a history holds.
type Stats struct {
	Writes, Reads         int // acknowledged / answered
	Unknown               int // writes that failed or timed out
	FailedReads           int
	TimedOut              int // operations of either kind
	FinalReads            int
	FirstCall, LastReturn int64
}

func Count(ops []Op) Stats {
	var s Stats
	for _, op := range ops {
		switch {
		case op.Final && op.Result == OK:
			s.FinalReads++
		case op.Write && op.Result == OK:
			s.Writes++
		case op.Write:
			s.Unknown++
		case op.Result == OK:
			s.Reads++
		default:
			s.FailedReads++
		}
		if op.Result == TimedOut {
			s.TimedOut++
		}
		if s.FirstCall == 0 || op.Call < s.FirstCall {
			s.FirstCall = op.Call
		}
		s.LastReturn = max(s.LastReturn, op.Return)
	}
	return s
}

func (s Stats) String() string {
	return fmt.Sprintf("%d acknowledged writes, %d reads, %d writes with unknown outcome, %d failed reads (%d timed out), %d final reads",
		s.Writes, s.Reads, s.Unknown, s.FailedReads, s.TimedOut, s.FinalReads)
}
