package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The register workload: a few blocks of the volume, each a register
// holding the number of the write that last wrote it. Clients write
// unique numbers and read blocks back through whichever replica is
// primary; the history (call and return times, outcomes) is checked with
// porcupine. A write whose outcome is unknown (it failed, or its primary
// crashed while it was out) may or may not have taken effect, before its
// return time: the crash, or the end of the history.

const regBlock = 4096

// regOffsets: some blocks share a bitmap region, most sit in different
// activity-log extents (the pair's log holds 4 of its 1 MiB extents, so
// it turns over all the time), one is the volume's last block.
var regOffsets = []int64{0, 4096, 64 << 10, 1 << 20, 1<<20 + 8192, 3 << 20, 5<<20 + 60<<10, pairSize - regBlock}

// regEncode fills a block with write v's pattern: every 8-byte word
// derived from v and its index, so a block mixing two writes (torn or
// reordered) decodes to no write at all.
func regEncode(v uint64) []byte {
	b := make([]byte, regBlock)
	for j := 0; j < regBlock; j += 8 {
		binary.LittleEndian.PutUint64(b[j:], regWord(v, j))
	}
	return b
}

func regWord(v uint64, j int) uint64 {
	if j == 0 {
		return v
	}
	return v*0x9E3779B97F4A7C15 ^ uint64(j)*0xBF58476D1CE4E5B9
}

// regBad is what a read of a block no single write left whole decodes to.
const regBad = math.MaxUint64

// regDecode says which write a block holds: 0 for never written.
func regDecode(b []byte) uint64 {
	v := binary.LittleEndian.Uint64(b)
	for j := 0; j < len(b); j += 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		if v == 0 && w != 0 || v != 0 && w != regWord(v, j) {
			return regBad
		}
	}
	return v
}

type regOutcome uint8

const (
	regOK      regOutcome = iota
	regUnknown            // a write that failed or was out when its primary crashed
)

// regOp is one client operation.
type regOp struct {
	client  int
	write   bool
	block   int
	value   uint64 // the write's number, or what the read returned
	call    int64  // ns since the history began
	ret     int64
	outcome regOutcome
	segment int // crashes before the call: each crash ends a segment
}

type regInput struct {
	write, maybe bool // maybe: a write that may not have taken effect
	block        int
	value        uint64
}

// regModel is one register per block; a maybe-write leaves the register
// either way.
var regModel = (&porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[int][]porcupine.Operation{}
		for _, op := range h {
			b := op.Input.(regInput).block
			by[b] = append(by[b], op)
		}
		var out [][]porcupine.Operation
		for _, b := range slices.Sorted(maps.Keys(by)) {
			out = append(out, by[b])
		}
		return out
	},
	Init: func() []any { return []any{uint64(0)} },
	Step: func(state, input, output any) []any {
		st, in := state.(uint64), input.(regInput)
		switch {
		case in.write && in.maybe:
			return []any{st, in.value}
		case in.write:
			return []any{in.value}
		case output.(uint64) == st:
			return []any{st}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		switch {
		case in.write && in.maybe:
			return fmt.Sprintf("write?(%d, %d)", in.block, in.value)
		case in.write:
			return fmt.Sprintf("write(%d, %d)", in.block, in.value)
		}
		return fmt.Sprintf("read(%d) -> %d", in.block, output)
	},
}).ToModel()

// history records the workload's operations.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []regOp
	// segEnd[k]: when segment k's primary was surely gone and its
	// successor served (the ops out at the crash had returned).
	segEnd []int64
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op regOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) snapshot() []regOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// operations turns ops into porcupine's: unknown writes return at their
// segment's end (or after everything, in the last segment); reads without
// an answer say nothing and are left out.
func (h *history) operations(ops []regOp) []porcupine.Operation {
	h.mu.Lock()
	segEnd := slices.Clone(h.segEnd)
	h.mu.Unlock()
	var last int64
	for _, op := range ops {
		last = max(last, op.ret, op.call)
	}
	var out []porcupine.Operation
	for _, op := range ops {
		in := regInput{write: op.write, block: op.block, value: op.value}
		ret := op.ret
		if op.outcome == regUnknown {
			if !op.write {
				continue
			}
			in.maybe = true
			ret = last + 1
			if op.segment < len(segEnd) {
				ret = segEnd[op.segment]
			}
		}
		var output any = uint64(0)
		if !op.write {
			output = op.value
		}
		out = append(out, porcupine.Operation{ClientId: op.client, Input: in, Call: op.call, Output: output, Return: ret})
	}
	return out
}

// checkLinearizable fails t unless ops are linearizable; an illegal
// history is drawn to an HTML file named in the failure.
func (h *history) checkLinearizable(t *testing.T, what string, ops []porcupine.Operation) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(regModel, ops, 2*time.Minute)
	switch res {
	case porcupine.Ok:
		return
	case porcupine.Unknown:
		t.Fatalf("%s: the linearizability check of %d operations timed out", what, len(ops))
	}
	dir, err := os.MkdirTemp("", "tandem-linearizability-")
	if err != nil {
		t.Fatalf("%s: %d operations are not linearizable", what, len(ops))
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.html", filepath.Base(t.Name()), what))
	if err := porcupine.VisualizePath(regModel, info, path); err != nil {
		t.Logf("visualize: %v", err)
	}
	t.Errorf("%s: %d operations are not linearizable (drawn in %s)", what, len(ops), path)
	h.explain(t, ops)
	t.FailNow()
}

// explain logs, for each block whose history is illegal, the end of the
// longest linearization porcupine found and the operations it could not
// place after it (the earliest to return first).
func (h *history) explain(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	h.mu.Lock()
	t.Logf("segment ends: %v", h.segEnd)
	h.mu.Unlock()
	blockOf := map[uint64]int{}
	for _, op := range ops {
		if in := op.Input.(regInput); in.write {
			blockOf[in.value] = in.block
		}
	}
	describe := func(op porcupine.Operation) string {
		in := op.Input.(regInput)
		s := fmt.Sprintf("client %d  [%d, %d]  %s", op.ClientId, op.Call, op.Return, regModel.DescribeOperation(in, op.Output))
		if v := op.Output.(uint64); !in.write && v != 0 {
			if b, ok := blockOf[v]; !ok {
				s += " (no write wrote it)"
			} else if b != in.block {
				s += fmt.Sprintf(" (written to block %d)", b)
			}
		}
		return s
	}
	for _, part := range regModel.Partition(ops) {
		res, info := porcupine.CheckOperationsVerbose(regModel, part, time.Minute)
		if res != porcupine.Illegal {
			continue
		}
		var longest []porcupine.Operation
		for _, ls := range info.PartialLinearizationsOperations() {
			for _, l := range ls {
				if len(l) > len(longest) {
					longest = l
				}
			}
		}
		type key struct {
			client int
			call   int64
		}
		placed := map[key]bool{}
		for _, op := range longest {
			placed[key{op.ClientId, op.Call}] = true
		}
		t.Logf("block %d: %d operations, the longest linearization found places %d; it ends:", part[0].Input.(regInput).block, len(part), len(longest))
		for _, op := range longest[max(0, len(longest)-12):] {
			t.Logf("  %s", describe(op))
		}
		var rest []porcupine.Operation
		for _, op := range part {
			if !placed[key{op.ClientId, op.Call}] {
				rest = append(rest, op)
			}
		}
		slices.SortFunc(rest, func(x, y porcupine.Operation) int { return int(x.Return - y.Return) })
		t.Logf("and cannot go on with:")
		for _, op := range rest[:min(len(rest), 8)] {
			t.Logf("  %s", describe(op))
		}
	}
}

// workload runs clients against whichever volume is the target.
type workload struct {
	h       *history
	seed    uint64
	clients int
	// ownBlocks: block b is written by client b%clients only, so each
	// block's writes are in one client's order (async loss accounting).
	ownBlocks bool

	mu      sync.Mutex
	target  *Volume
	segment int           // crashes so far
	out     map[int]int   // operations out (not yet recorded) by segment
	ready   chan struct{} // closed while target is set
	stop    chan struct{}
	wg      sync.WaitGroup
	odd     []error       // with mu: errors other than ErrClosed
	next    atomic.Uint64 // write numbers
	done    atomic.Int64  // operations answered
}

func newWorkload(h *history, seed uint64, clients int) *workload {
	return &workload{h: h, seed: seed, clients: clients, out: map[int]int{}, ready: make(chan struct{}), stop: make(chan struct{})}
}

// serve makes v the target.
func (w *workload) serve(v *Volume) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target = v
	close(w.ready)
}

// crashed takes the target away: operations out on it have unknown
// outcomes, and a new segment begins.
func (w *workload) crashed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target = nil
	w.segment++
	w.ready = make(chan struct{})
}

// endSegment waits until every operation of the crashed segments is
// recorded, then records that they are all over: an operation out at a
// crash took effect before now or never.
func (w *workload) endSegment(p *pair) {
	p.t.Helper()
	var seg int
	p.waitFor("the crashed primary's operations answered", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		seg = w.segment
		for s, n := range w.out {
			if s < seg && n > 0 {
				return false
			}
		}
		return true
	})
	w.h.mu.Lock()
	for len(w.h.segEnd) < seg {
		w.h.segEnd = append(w.h.segEnd, w.h.now())
	}
	w.h.mu.Unlock()
}

// current returns the target and its segment; an operation on it is out
// until recorded(segment) is called.
func (w *workload) current() (*Volume, int, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.target != nil {
		w.out[w.segment]++
	}
	return w.target, w.segment, w.ready
}

func (w *workload) recorded(seg int) {
	w.mu.Lock()
	w.out[seg]--
	w.mu.Unlock()
}

// failed notes a client's error: ErrClosed is what a crashed primary
// answers; anything else is odd.
func (w *workload) failed(v *Volume, err error) {
	if !errors.Is(err, ErrClosed) {
		w.mu.Lock()
		w.odd = append(w.odd, err)
		w.mu.Unlock()
	}
	w.backOff(v)
}

// oddErrors returns the errors other than ErrClosed the clients saw.
func (w *workload) oddErrors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.odd)
}

func (w *workload) segmentNow() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.segment
}

func (w *workload) start() {
	for c := range w.clients {
		w.wg.Add(1)
		go w.client(c)
	}
}

func (w *workload) halt() {
	close(w.stop)
	w.wg.Wait()
}

// waitOps waits until n more operations were answered.
func (w *workload) waitOps(p *pair, n int64) {
	p.t.Helper()
	goal := w.done.Load() + n
	p.waitFor(fmt.Sprintf("%d more client operations", n), func() bool { return w.done.Load() >= goal })
}

func (w *workload) client(c int) {
	defer w.wg.Done()
	rng := rand.New(rand.NewPCG(w.seed, uint64(c)))
	buf := make([]byte, regBlock)
	for {
		v, seg, ready := w.current()
		if v == nil {
			select {
			case <-ready:
				continue
			case <-w.stop:
				return
			}
		}
		select {
		case <-w.stop:
			w.recorded(seg)
			return
		default:
		}
		op := regOp{client: c, block: rng.IntN(len(regOffsets)), segment: seg}
		r := rng.IntN(100)
		if r < 60 && w.ownBlocks {
			owned := (len(regOffsets)-1-c)/w.clients + 1 // blocks c, c+clients, …
			op.block = c + w.clients*rng.IntN(owned)
		}
		var err error
		switch {
		case r < 60:
			op.write = true
			op.value = w.next.Add(1)
			op.call = w.h.now()
			_, err = v.WriteAt(regEncode(op.value), regOffsets[op.block])
		case r < 95:
			op.call = w.h.now()
			_, err = v.ReadAt(buf, regOffsets[op.block])
			op.value = regDecode(buf)
		default:
			err = v.Flush()
			w.recorded(seg)
			if err != nil {
				w.failed(v, err)
			}
			w.done.Add(1)
			continue
		}
		op.ret = w.h.now()
		if err != nil || w.segmentNow() != seg {
			op.outcome = regUnknown
		}
		w.h.add(op)
		w.recorded(seg)
		w.done.Add(1)
		if err != nil {
			w.failed(v, err)
		}
	}
}

// backOff waits a little, or until the target changes, after an error.
func (w *workload) backOff(v *Volume) {
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		cur := w.target
		w.mu.Unlock()
		if cur != v {
			return
		}
		select {
		case <-w.stop:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// readAll reads every block through v as the checker's client and
// records the reads; it returns what each block holds.
func (w *workload) readAll(t *testing.T, v *Volume) []uint64 {
	t.Helper()
	vals := make([]uint64, len(regOffsets))
	buf := make([]byte, regBlock)
	seg := w.segmentNow()
	for b, off := range regOffsets {
		call := w.h.now()
		if _, err := v.ReadAt(buf, off); err != nil {
			t.Fatalf("reading block %d: %v", b, err)
		}
		vals[b] = regDecode(buf)
		w.h.add(regOp{client: w.clients, block: b, value: vals[b], call: call, ret: w.h.now(), segment: seg})
	}
	return vals
}
