package raid

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tandem/internal/events"
)

// Background work: the resync of regions whose redundancy is unknown (after
// a crash or a create) and the rebuild of members (a spare taking a failed
// member's slot, a re-added member, a replacement). One job runs at a time,
// resync first, like md.

// Progress describes the running job.
type Progress struct {
	Kind     string        `json:"kind"`             // "resync" or "rebuild"
	Member   string        `json:"member,omitempty"` // member being rebuilt
	Done     int64         `json:"done"`             // stripes done
	Total    int64         `json:"total"`            // stripes to do
	Rate     float64       `json:"rate_bytes_per_sec"`
	ETA      time.Duration `json:"eta_ns"`
	Limit    int64         `json:"limit_bytes_per_sec,omitempty"`
	Started  time.Time     `json:"started"`
	Fraction float64       `json:"fraction"`
}

type jobRunner struct {
	a      *Array
	kickCh chan struct{}
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	cur    *Progress
	rate   int64
	bg     bool
	idle   *sync.Cond
	busy   bool
}

func newJobRunner(a *Array, background bool) *jobRunner {
	j := &jobRunner{a: a, kickCh: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), rate: a.opts.RebuildRate, bg: background}
	j.idle = sync.NewCond(&j.mu)
	if background {
		go j.loop()
	} else {
		close(j.done)
	}
	return j
}

func (j *jobRunner) kick() {
	select {
	case j.kickCh <- struct{}{}:
	default:
	}
}

func (j *jobRunner) loop() {
	defer close(j.done)
	for {
		select {
		case <-j.stop:
			return
		case <-j.kickCh:
		}
		j.setBusy(true)
		j.a.runJobs(j.stop)
		j.setBusy(false)
	}
}

func (j *jobRunner) setBusy(b bool) {
	j.mu.Lock()
	j.busy = b
	if !b {
		j.cur = nil
	}
	j.idle.Broadcast()
	j.mu.Unlock()
}

func (j *jobRunner) close() {
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	<-j.done
}

// SetRebuildRate changes the rebuild/resync rate limit (bytes/s, 0 = none).
func (a *Array) SetRebuildRate(bytesPerSec int64) {
	a.jobs.mu.Lock()
	a.jobs.rate = bytesPerSec
	a.jobs.mu.Unlock()
}

// Progress returns the running job, or nil.
func (a *Array) Progress() *Progress {
	a.jobs.mu.Lock()
	defer a.jobs.mu.Unlock()
	if a.jobs.cur == nil {
		return nil
	}
	p := *a.jobs.cur
	return &p
}

// WaitIdle blocks until no background job runs and none is pending, or ctx
// ends. Tests and the CLI use it.
func (a *Array) WaitIdle(ctx context.Context) error {
	for {
		a.jobs.mu.Lock()
		busy := a.jobs.busy || len(a.jobs.kickCh) > 0
		a.jobs.mu.Unlock()
		if !busy && !a.hasWork() {
			return nil
		}
		if !a.jobs.bg {
			a.RunJobs()
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// RunJobs runs pending resync and rebuild work to completion in the calling
// goroutine (for arrays opened with NoBackground).
func (a *Array) RunJobs() { a.runJobs(nil) }

func (a *Array) hasWork() bool {
	if r := a.resync.Load(); r != nil {
		return true
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.failed || a.closed {
		return false
	}
	for i, m := range a.slots {
		if m == nil && len(a.spares) > 0 || m.usable() && m.rec.Load().pending() || a.repl[i].usable() && a.repl[i].rec.Load().pending() {
			return true
		}
	}
	return false
}

func (a *Array) runJobs(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		a.activateSpares()
		if r := a.resync.Load(); r != nil {
			if !a.runResync(r, stop) {
				return
			}
			continue
		}
		m := a.nextRebuild()
		if m == nil {
			return
		}
		if !a.runRebuild(m, stop) {
			return
		}
	}
}

// activateSpares puts a spare into every empty slot.
func (a *Array) activateSpares() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed || a.closed {
		return
	}
	changed := false
	for i := range a.slots {
		if a.slots[i] != nil || len(a.spares) == 0 {
			continue
		}
		sp := a.spares[0]
		a.spares = a.spares[1:]
		sp.role, sp.lastSlot = int32(i), int32(i)
		r := &recovery{spb: a.lay.StripesPerBit}
		sp.rec.Store(r)
		a.slots[i] = sp
		a.forgetSlotLocked(i)
		changed = true
		a.log.Info("raid: spare takes slot", "array", a.name, "member", sp.name, "slot", i)
	}
	if changed {
		a.writeSuperblocksLocked(true)
		a.writeBitmapLocked(nil)
	}
}

func (a *Array) nextRebuild() *member {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.failed || a.closed {
		return nil
	}
	for i := range a.slots {
		if m := a.slots[i]; m.usable() && m.rec.Load().pending() {
			return m
		}
		if m := a.repl[i]; m.usable() && m.rec.Load().pending() {
			return m
		}
	}
	return nil
}

// windowStripes is how many stripes resync and check handle per lock:
// about 1 MiB of member I/O, so they run at sequential speed.
func (a *Array) windowStripes() int64 { return max(1, min((1<<20)/a.geo.Chunk, a.geo.Stripes()/32)) }

// RebuildWindow is the member data a rebuild reads and writes per member
// and window: large sequential I/O, while user I/O waits at most one window.
// Small arrays still get some 32 windows, so progress moves in steps.
const RebuildWindow = 4 << 20

func (a *Array) jobWindow() int64 {
	return max(1, min(RebuildWindow/a.geo.Chunk, a.geo.Stripes()/32))
}

// pacer enforces the rate limit and computes rate and ETA.
type pacer struct {
	a       *Array
	start   time.Time
	bytes   int64
	total   int64 // stripes
	done    int64
	stop    <-chan struct{}
	lastPct float64
	prog    *Progress
}

// step accounts for n stripes (bytes of member writes) and sleeps on the
// clock as the limit requires. It returns false when stopped.
func (p *pacer) step(stripes, bytes int64) bool {
	p.done += stripes
	p.bytes += bytes
	clk := p.a.opts.Clock
	elapsed := clk.Since(p.start)
	p.a.jobs.mu.Lock()
	limit := p.a.jobs.rate
	p.a.jobs.mu.Unlock()
	if wait := pacing(p.bytes, elapsed, limit); wait > 0 {
		t := clk.NewTimer(wait)
		select {
		case <-t.C():
		case <-p.stop:
			t.Stop()
			return false
		}
		elapsed = clk.Since(p.start)
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.bytes) / elapsed.Seconds()
	}
	frac := float64(p.done) / float64(max(1, p.total))
	var eta time.Duration
	if p.done > 0 && rate > 0 {
		eta = time.Duration(float64(elapsed) * float64(p.total-p.done) / float64(p.done))
	}
	p.a.jobs.mu.Lock()
	p.prog.Done, p.prog.Rate, p.prog.ETA, p.prog.Limit, p.prog.Fraction = p.done, rate, eta, limit, frac
	p.a.jobs.mu.Unlock()
	if p.prog.Kind == "rebuild" && frac-p.lastPct >= p.a.opts.ProgressEvery && frac < 1 {
		p.lastPct = frac
		p.a.emit(events.RaidRebuildProgress, fmt.Sprintf("rebuild of %s %.0f%% at %.1f MB/s, ETA %s", p.prog.Member, frac*100, rate/1e6, eta.Round(time.Second)),
			map[string]any{"member": p.prog.Member, "percent": int(frac * 100), "rate_bytes_per_sec": int64(rate), "eta_seconds": int64(eta.Seconds())})
	}
	select {
	case <-p.stop:
		return false
	default:
		return true
	}
}

// pacing is how long to wait so that bytes over elapsed stays under limit.
func pacing(bytes int64, elapsed time.Duration, limit int64) time.Duration {
	if limit <= 0 {
		return 0
	}
	want := time.Duration(float64(bytes) / float64(limit) * float64(time.Second))
	return want - elapsed
}

func (a *Array) startProgress(kind, member string, total int64) *pacer {
	p := &Progress{Kind: kind, Member: member, Total: total, Started: a.opts.Clock.Now()}
	a.jobs.mu.Lock()
	a.jobs.cur = p
	a.jobs.busy = true
	a.jobs.mu.Unlock()
	return &pacer{a: a, start: p.Started, total: total, prog: p}
}

// forgetSlotLocked makes former members of slot i ineligible for a bitmap
// re-add: once another member fills the slot, bits get cleared again and no
// longer record what they missed.
func (a *Array) forgetSlotLocked(i int) {
	for k := range a.absent {
		if a.absent[k].Slot == int32(i) {
			a.absent[k].Slot = -1
		}
	}
	for _, f := range a.faulty {
		if f.lastSlot == int32(i) {
			f.lastSlot = -1
		}
	}
}
