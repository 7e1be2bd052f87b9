package drill

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"tandem/internal/api"
	"tandem/internal/clock"
	"tandem/internal/events"
	"tandem/internal/node"
)

// Cluster is what a drill drives: one agent's API (the CLI's client).
type Cluster interface {
	Status(ctx context.Context) (node.Status, error)
	Failover(ctx context.Context, group, to string) (string, error)
	Cleanup(ctx context.Context, group string) error
	Events(ctx context.Context, q url.Values) ([]events.Event, error)
	// RecordDrill appends a drill record to the agent's audit log.
	RecordDrill(ctx context.Context, group, result, message string, attrs map[string]any) error
}

// Crasher kills the active node's agent the way a crash would (SIGKILL),
// for an unplanned drill; it is that node's agent's API.
type Crasher interface {
	CrashForDrill(ctx context.Context, group string) error
}

// Options of one drill.
type Options struct {
	Group string
	To    string // "" = the group's other data node
	// Unplanned kills the active node's agent (Crash) instead of a planned
	// switchover; the group must fail over on its own.
	Unplanned bool
	Crash     Crasher
	// Hold keeps the group on the standby this long (checked again at the
	// end) before switching back.
	Hold time.Duration
	// Check is a URL the service must answer on the standby:
	// http://…, https://… (2xx or 3xx) or tcp://HOST:PORT (a connect).
	Check string
	// SwitchTimeout bounds each switch (default 60 s), VerifyTimeout the
	// check of the service (default 30 s), RejoinTimeout the wait for a
	// crashed node to be back and in sync before switching back (default
	// 5 min: systemd restarts the agent at once, a resync takes longer).
	SwitchTimeout, VerifyTimeout, RejoinTimeout time.Duration
	// Poll is how often the status is read while waiting (default 50 ms).
	Poll  time.Duration
	Clock clock.Clock
	// Prober checks Check (default: the real network).
	Prober func(ctx context.Context, check string) error
	// Progress, when set, is told each step as it happens.
	Progress func(step string)
}

func (o *Options) defaults() {
	if o.SwitchTimeout <= 0 {
		o.SwitchTimeout = 60 * time.Second
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = 30 * time.Second
	}
	if o.RejoinTimeout <= 0 {
		o.RejoinTimeout = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Prober == nil {
		o.Prober = Probe
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
}

// Results of a drill.
const (
	Pass    = "pass"    // switched, answered there, switched back
	Fail    = "fail"    // something did not happen as it should (Error says what)
	Refused = "refused" // the pre-check refused; nothing was changed
)

// Result is what a drill measured. Durations are milliseconds; 0 means the
// step did not happen.
type Result struct {
	Group     string    `json:"group"`
	Kind      string    `json:"kind"` // planned or unplanned
	Result    string    `json:"result"`
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	Started   time.Time `json:"started"`
	Check     string    `json:"check,omitempty"`
	Refusals  []string  `json:"refusals,omitempty"`
	Warnings  []string  `json:"warnings,omitempty"`
	Error     string    `json:"error,omitempty"`
	Recorded  bool      `json:"recorded"`
	RecordErr string    `json:"record_error,omitempty"`
	// SwitchMs: from the switchover request (or the kill) to the group
	// running on the standby; VerifyMs: then until the service answered
	// there; HoldMs: how long it stayed; RejoinMs (unplanned): the wait
	// for the killed node to be back and in sync; SwitchBackMs and
	// VerifyBackMs: the same on the way back.
	SwitchMs     int64 `json:"switch_ms,omitempty"`
	VerifyMs     int64 `json:"verify_ms,omitempty"`
	HoldMs       int64 `json:"hold_ms,omitempty"`
	RejoinMs     int64 `json:"rejoin_ms,omitempty"`
	SwitchBackMs int64 `json:"switch_back_ms,omitempty"`
	VerifyBackMs int64 `json:"verify_back_ms,omitempty"`
	TotalMs      int64 `json:"total_ms"`
	// Takeover is the new holder's own account of an unplanned failover
	// (detect_ms, decide_ms, start_ms, … from its audit log).
	Takeover map[string]any `json:"takeover,omitempty"`
	// Pin says what became of the group's admin pin.
	Pin string `json:"pin,omitempty"`
}

func (r *Result) kind() string {
	if r.Kind == "" {
		return "planned"
	}
	return r.Kind
}

// attrs is the record's attributes in the audit log.
func (r *Result) attrs() map[string]any {
	a := map[string]any{"result": r.Result, "kind": r.kind(), "total_ms": r.TotalMs}
	set := func(k string, v int64) {
		if v > 0 {
			a[k] = v
		}
	}
	set("switch_ms", r.SwitchMs)
	set("verify_ms", r.VerifyMs)
	set("hold_ms", r.HoldMs)
	set("rejoin_ms", r.RejoinMs)
	set("switch_back_ms", r.SwitchBackMs)
	set("verify_back_ms", r.VerifyBackMs)
	for k, v := range map[string]string{"from": r.From, "to": r.To, "check": r.Check, "error": r.Error} {
		if v != "" {
			a[k] = v
		}
	}
	if len(r.Refusals) > 0 {
		a["refusals"] = r.Refusals
	}
	for _, k := range []string{"detect_ms", "decide_ms", "start_ms"} {
		if v, ok := r.Takeover[k]; ok {
			a["takeover_"+k] = v
		}
	}
	return a
}

// message is the record's one-line summary.
func (r *Result) message() string {
	switch r.Result {
	case Refused:
		return fmt.Sprintf("%s drill of %s refused: %s", r.kind(), r.Group, joinFirst(r.Refusals))
	case Fail:
		return fmt.Sprintf("%s drill of %s %s → %s failed: %s", r.kind(), r.Group, r.From, r.To, r.Error)
	}
	return fmt.Sprintf("%s drill of %s %s → %s → %s passed: switch %d ms, verify %d ms, switch back %d ms",
		r.kind(), r.Group, r.From, r.To, r.From, r.SwitchMs, r.VerifyMs, r.SwitchBackMs)
}

func joinFirst(s []string) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) == 1 {
		return s[0]
	}
	return s[0] + fmt.Sprintf(" (and %d more)", len(s)-1)
}

// Run performs a drill and records it in the audit log of the agent c
// talks to, whatever its result. The returned error is only for a drill
// that could not even read the cluster's status; a refused or failed
// drill is a Result.
func Run(ctx context.Context, c Cluster, o Options) (*Result, error) {
	o.defaults()
	r := &Result{Group: o.Group, Kind: "planned", Started: o.Clock.Now(), Check: o.Check}
	if o.Unplanned {
		r.Kind = "unplanned"
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	chk := Precheck(st, o.Group, o.To)
	r.From, r.To, r.Warnings = chk.Plan.From, chk.Plan.To, chk.Warnings
	if o.Unplanned && chk.Plan.From != "" && st.Node == chk.Plan.From {
		chk.Refusals = append(chk.Refusals, fmt.Sprintf("this command talks to %s's agent, the one an unplanned drill kills: "+
			"run it against the standby's or the witness's agent (--socket, or --api)", st.Node))
	}
	if o.Unplanned && o.Crash == nil {
		chk.Refusals = append(chk.Refusals, "an unplanned drill needs a way to the active node's agent")
	}
	if !chk.OK() {
		r.Result, r.Refusals = Refused, chk.Refusals
		record(ctx, c, r, o.Clock)
		return r, nil
	}
	d := &drill{c: c, o: o, r: r, plan: chk.Plan}
	d.run(ctx)
	record(ctx, c, r, o.Clock)
	return r, nil
}

// record appends r to the audit log (with a context of its own, so a
// drill cut short by its deadline is still recorded).
func record(ctx context.Context, c Cluster, r *Result, clk clock.Clock) {
	r.TotalMs = clk.Since(r.Started).Milliseconds()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.RecordDrill(rctx, r.Group, r.Result, r.message(), r.attrs()); err != nil {
		r.RecordErr = err.Error()
		return
	}
	r.Recorded = true
}

type drill struct {
	c    Cluster
	o    Options
	r    *Result
	plan Plan
}

func (d *drill) fail(format string, args ...any) {
	if d.r.Error == "" {
		d.r.Error = fmt.Sprintf(format, args...)
	}
	d.r.Result = Fail
}

func (d *drill) run(ctx context.Context) {
	p, clk := d.plan, d.o.Clock
	d.r.Result = Pass
	// There.
	t0 := clk.Now()
	if d.o.Unplanned {
		d.o.Progress(fmt.Sprintf("killing the agent of %s (SIGKILL)", p.From))
		if err := d.o.Crash.CrashForDrill(ctx, p.Group); err != nil && !crashedUnderUs(err) {
			d.fail("kill the agent of %s: %v", p.From, err)
			return
		}
	} else {
		d.o.Progress(fmt.Sprintf("switching %s from %s to %s", p.Group, p.From, p.To))
		if _, err := d.c.Failover(ctx, p.Group, p.To); err != nil {
			d.fail("switch %s to %s: %v", p.Group, p.To, err)
			return
		}
	}
	if err := d.waitRunning(ctx, p.To, d.o.SwitchTimeout); err != nil {
		if d.o.Unplanned {
			err = fmt.Errorf("%w (an agent restarted before %s noticed it was gone, within node_timeout, keeps its group: no failover happens)", err, p.To)
		}
		d.fail("%v", err)
		return
	}
	d.r.SwitchMs = msSince(clk, t0)
	if d.o.Unplanned {
		d.r.Takeover = d.takeover(ctx, t0)
	}
	t1 := clk.Now()
	d.o.Progress(fmt.Sprintf("running on %s after %d ms; checking the service", p.To, d.r.SwitchMs))
	if err := d.verify(ctx, p.To); err != nil {
		d.fail("the service on %s: %v", p.To, err)
		// Back to where it ran, as a failed drill should leave it.
	} else {
		d.r.VerifyMs = msSince(clk, t1)
	}
	if d.o.Hold > 0 && d.r.Result == Pass {
		d.o.Progress(fmt.Sprintf("holding on %s for %s", p.To, d.o.Hold))
		t2 := clk.Now()
		if err := sleep(ctx, clk, d.o.Hold); err != nil {
			d.fail("hold: %v", err)
			return
		}
		d.r.HoldMs = msSince(clk, t2)
		if err := d.verify(ctx, p.To); err != nil {
			d.fail("after holding for %s, the service on %s: %v", d.o.Hold, p.To, err)
		}
	}
	// And back.
	if d.o.Unplanned {
		d.o.Progress(fmt.Sprintf("waiting for %s to be back and in sync", p.From))
		t3 := clk.Now()
		if err := d.waitReady(ctx, p.From); err != nil {
			d.fail("switch back: %v (the group stays on %s)", err, p.To)
			return
		}
		d.r.RejoinMs = msSince(clk, t3)
	}
	d.o.Progress(fmt.Sprintf("switching %s back to %s", p.Group, p.From))
	t4 := clk.Now()
	if _, err := d.c.Failover(ctx, p.Group, p.From); err != nil {
		d.fail("switch back to %s: %v (the group stays on %s)", p.From, err, p.To)
		return
	}
	if err := d.waitRunning(ctx, p.From, d.o.SwitchTimeout); err != nil {
		d.fail("switch back: %v", err)
		return
	}
	d.r.SwitchBackMs = msSince(clk, t4)
	t5 := clk.Now()
	if err := d.verify(ctx, p.From); err != nil {
		d.fail("the service back on %s: %v", p.From, err)
	} else {
		d.r.VerifyBackMs = msSince(clk, t5)
	}
	d.restorePin(ctx)
}

// crashedUnderUs: the kill request got no answer because the agent died
// as it answered; the wait for the takeover tells whether it did.
func crashedUnderUs(err error) bool { return errors.Is(err, api.ErrUnreachable) }

// waitRunning waits until the group runs (every resource running, no
// move under way) on node.
func (d *drill) waitRunning(ctx context.Context, on string, timeout time.Duration) error {
	var last string
	err := d.poll(ctx, timeout, func(s node.Status) bool {
		g, ok := findGroup(s, d.plan.Group)
		if !ok {
			last = "the group is gone from the status"
			return false
		}
		last = fmt.Sprintf("holder %q, phase %q, handover %q%s", g.Holder, g.Phase, g.Handover, errSuffix(g.PhaseError))
		return g.Holder == on && g.Running && g.Phase == "running" && g.Handover == ""
	})
	if err != nil {
		return fmt.Errorf("%s did not run on %s within %s (last seen: %s): %w", d.plan.Group, on, timeout, last, err)
	}
	return nil
}

// waitReady waits until a switch back to node would pass the pre-check.
func (d *drill) waitReady(ctx context.Context, on string) error {
	var last []string
	err := d.poll(ctx, d.o.RejoinTimeout, func(s node.Status) bool {
		chk := Precheck(s, d.plan.Group, on)
		last = chk.Refusals
		return chk.OK()
	})
	if err != nil {
		return fmt.Errorf("%s was not ready to take the group back within %s (%s): %w", on, d.o.RejoinTimeout, joinFirst(last), err)
	}
	return nil
}

// poll reads the status every Poll until ok or the timeout; a status that
// cannot be read (the agent busy in a failover) is tried again.
func (d *drill) poll(ctx context.Context, timeout time.Duration, ok func(node.Status) bool) error {
	deadline := d.o.Clock.Now().Add(timeout)
	var lastErr error
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := d.c.Status(sctx)
		cancel()
		if err == nil && ok(s) {
			return nil
		}
		lastErr = err
		if !d.o.Clock.Now().Before(deadline) {
			if lastErr != nil {
				return lastErr
			}
			return errors.New("timed out")
		}
		if err := sleep(ctx, d.o.Clock, d.o.Poll); err != nil {
			return err
		}
	}
}

// verify checks the service on node: the group still runs there with
// every resource running, and Check (if any) answers, retried until
// VerifyTimeout.
func (d *drill) verify(ctx context.Context, node string) error {
	if err := d.waitRunning(ctx, node, d.o.VerifyTimeout); err != nil {
		return err
	}
	if d.o.Check == "" {
		return nil
	}
	deadline := d.o.Clock.Now().Add(d.o.VerifyTimeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := d.o.Prober(pctx, d.o.Check)
		cancel()
		if err == nil {
			return nil
		}
		if !d.o.Clock.Now().Before(deadline) {
			return fmt.Errorf("%s did not answer within %s: %w", d.o.Check, d.o.VerifyTimeout, err)
		}
		if err := sleep(ctx, d.o.Clock, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// takeover reads the new holder's account of the failover (detect,
// decide, start) from the audit log of the agent the drill talks to, when
// that agent is the new holder; another agent's status has the detection
// time only.
func (d *drill) takeover(ctx context.Context, since time.Time) map[string]any {
	s, err := d.c.Status(ctx)
	if err != nil {
		return nil
	}
	if s.Node != d.plan.To {
		if g, ok := findGroup(s, d.plan.Group); ok && g.Takeover != nil && g.Takeover.To == d.plan.To {
			return map[string]any{"detect_ms": g.Takeover.DetectMs, "from": g.Takeover.From}
		}
		return nil
	}
	q := url.Values{"kind": {string(events.Takeover)}, "group": {d.plan.Group}, "since": {since.UTC().Format(time.RFC3339Nano)}}
	for range 20 {
		evs, err := d.c.Events(ctx, q)
		if err == nil {
			for _, e := range evs {
				if e.Node == d.plan.To && e.Subject == d.plan.Group {
					return e.Attrs
				}
			}
		}
		if sleep(ctx, d.o.Clock, 100*time.Millisecond) != nil {
			break
		}
	}
	return nil
}

// restorePin leaves the group's admin pin as the drill found it: the
// switch back pins the group to its node, which a group that was not
// pinned must not keep (with failback manual it would then move back
// there by itself after a later failover). The pin goes with a cleanup,
// which also clears failures: it is done only while there are none, else
// the pin stays and the result says so.
func (d *drill) restorePin(ctx context.Context) {
	p := d.plan
	if p.WasPinned != "" {
		d.r.Pin = "pinned to " + p.WasPinned + " before the drill; pinned to " + p.From + " now"
		return
	}
	s, err := d.c.Status(ctx)
	if err != nil {
		d.r.Pin = fmt.Sprintf("left pinned to %s (status: %v): tandem cleanup %s", p.From, err, p.Group)
		return
	}
	g, _ := findGroup(s, p.Group)
	if g.Pinned == "" {
		return
	}
	if len(g.Failures) > 0 || g.Blocked != "" {
		d.r.Pin = fmt.Sprintf("left pinned to %s: the group has failures to look at (then tandem cleanup %s)", g.Pinned, p.Group)
		return
	}
	if err := d.c.Cleanup(ctx, p.Group); err != nil {
		d.r.Pin = fmt.Sprintf("left pinned to %s: tandem cleanup %s failed: %v", g.Pinned, p.Group, err)
		return
	}
	d.r.Pin = "unpinned, as before the drill"
}

// msSince is the milliseconds since t, at least 1: a step that happened
// never reads as 0, which means it did not.
func msSince(clk clock.Clock, t time.Time) int64 { return max(clk.Since(t).Milliseconds(), 1) }

// sleep waits d on clk, or until ctx ends.
func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
