package testbed

import (
	"fmt"
	"sort"
	"time"

	"tandem/internal/events"
	"tandem/internal/probe"
)

// AuditInput is what the audit cross-check reads: every voter's audit
// log, the bed's fault log, and optionally what the client saw.
type AuditInput struct {
	Logs   map[string][]events.Event // host → its audit log
	Faults []Fault
	// Lease is the cluster's lease duration: a holder that cannot act
	// (killed, frozen, cut off) holds its lease at most this long after.
	Lease time.Duration
	// End is when the run ended (spans still open end there).
	End time.Time
	// Answers are the client timelines by group (may be nil).
	Answers map[string]probe.Timeline
	// Slack tolerates the granularity of the logs' timestamps when
	// comparing the client's answers with lease spans.
	Slack time.Duration
}

// LeaseSpan is a stretch in which a node held a group's lease and ran it
// (logged group_started, or started a resource under that lease): from its
// lease_acquired (or, without one, its group_started) to the
// group_stopped or lease_lost that ended it, the agent's restart, the
// moment it was killed or frozen, or one lease after it was cut off,
// whichever came first.
type LeaseSpan struct {
	Group    string
	Node     string
	Epoch    uint64
	From, To time.Time
	Ended    string // what ended it
}

func (s LeaseSpan) String() string {
	return fmt.Sprintf("%s epoch %d %s–%s (%s)", s.Node, s.Epoch, s.From.Format("15:04:05.000"), s.To.Format("15:04:05.000"), s.Ended)
}

// LeaseSpans derives every node's lease spans from the audit logs.
func LeaseSpans(in AuditInput) []LeaseSpan {
	var out []LeaseSpan
	incap := Incapacities(in.Faults)
	for host, evs := range in.Logs {
		evs = sortedByTime(evs)
		type open struct {
			span    LeaseSpan
			started bool
		}
		cur := map[string]*open{} // group → open span
		closeSpan := func(g string, at time.Time, why string) {
			o := cur[g]
			if o == nil {
				return
			}
			delete(cur, g)
			if !o.started {
				return // acquired but never ran the group
			}
			if at.Before(o.span.From) {
				at = o.span.From
			}
			o.span.To, o.span.Ended = at, why
			out = append(out, o.span)
		}
		for _, e := range evs {
			switch {
			case e.Kind == events.LeaseAcquired:
				if o := cur[e.Group]; o != nil && o.span.Epoch == e.Epoch {
					continue
				}
				closeSpan(e.Group, e.Time, "lease re-acquired")
				cur[e.Group] = &open{span: LeaseSpan{Group: e.Group, Node: host, Epoch: e.Epoch, From: e.Time}}
			case startsResource(e.Kind):
				// A resource started under the open lease counts as running
				// the group: a group that regains its lease at the same
				// epoch converges back by starting what is not running,
				// with no new group_started (issue 9, invariant c), and its
				// VIP answers. (A start under no lease opens no span: the
				// client's answers and the other checks judge it.)
				if o := cur[e.Group]; o != nil && o.span.Epoch == e.Epoch {
					o.started = true
				}
			case e.Kind == events.GroupStarted:
				o := cur[e.Group]
				if o == nil || o.span.Epoch != e.Epoch {
					closeSpan(e.Group, e.Time, "started at another epoch")
					o = &open{span: LeaseSpan{Group: e.Group, Node: host, Epoch: e.Epoch, From: e.Time}}
					cur[e.Group] = o
				}
				o.started = true
			case e.Kind == events.LeaseLost || e.Kind == events.GroupStopped:
				closeSpan(e.Group, e.Time, string(e.Kind))
			case (e.Kind == events.NodeUp || e.Kind == events.NodeDown) && e.Subject == host:
				end, why := e.Time, "agent "+map[bool]string{true: "restarted", false: "stopped"}[e.Kind == events.NodeUp]
				if k, ok := agentKilledBefore(in.Faults, host, e.Time); ok && e.Kind == events.NodeUp {
					// Only the agent was killed: the guard it had opened
					// lets the VIP (and the services it left) answer
					// until its lease ends, one lease after the kill at
					// the latest; nobody else can hold the lease before.
					// Tighter and still sound, as for a cut: the dead
					// agent renewed only through voters that heard it,
					// so its lease ended one lease after they last did
					// (it may have sent its last renewal well before the
					// kill).
					bound, how := k.Add(in.Lease), fmt.Sprintf("agent killed at %s + lease", k.Format("15:04:05.000"))
					if hb, ok := heardLeaseEnd(in.Logs, host, k, time.Time{}, in.Lease); ok && hb.Before(bound) {
						bound, how = hb, fmt.Sprintf("agent killed at %s; last heard by the voters at %s + lease", k.Format("15:04:05.000"), hb.Add(-in.Lease).Format("15:04:05.000"))
					}
					// The new agent logs node_up only once it runs, which
					// on a loaded machine can be well after the old lease
					// ended; the old incarnation acted last at the kill,
					// so the bound ends its span either way (CI,
					// 2026-12-03: node_up 83 ms after the lease lapsed
					// made the successor look like a second holder).
					end, why = bound, how
				}
				for g := range cur {
					closeSpan(g, end, why)
				}
			}
		}
		for g := range cur {
			closeSpan(g, in.End, "end of run")
		}
	}
	// A killed node stops acting at once. A node frozen or cut off for
	// longer than a lease has lost its lease: a frozen one acted last when
	// it was frozen (it must check its lease before acting again, which its
	// later events show), a cut-off one keeps acting until its lease ends,
	// one lease later at most. A shorter freeze or cut may have cost it
	// nothing (it renewed after); its own events tell.
	for i := range out {
		s := &out[i]
		for _, c := range incap {
			if c.Host != s.Node || c.From.After(s.To) || (!c.To.IsZero() && c.To.Before(s.From)) {
				continue
			}
			long := c.To.IsZero() || !c.To.Before(c.From.Add(in.Lease))
			bound, why := c.From, ""
			switch c.Why {
			case FaultKill:
			case FaultFreeze:
				// A shorter freeze still outlived the lease when the
				// voters had stopped hearing the node a lease before the
				// thaw (it renews only through them): then it acted last
				// when frozen, as after a long one. Thawed sooner, it may
				// have acted after the thaw, but only until that end,
				// unless a voter heard it again before (which the end,
				// a fixpoint over what they heard, takes in): a node
				// thawed 24 ms before its lease lapsed logged the loss 58
				// ms after its successor's start (storage seed 2015).
				if !long {
					end, ok := heardLeaseEnd(in.Logs, s.Node, c.From, s.From, in.Lease)
					if !ok {
						continue
					}
					if c.To.Before(end) {
						bound, why = end, fmt.Sprintf("; thawed at %s, last heard by the voters at %s + lease",
							c.To.Format("15:04:05.000"), end.Add(-in.Lease).Format("15:04:05.000"))
					}
				}
			default:
				if !long {
					continue
				}
				bound = c.From.Add(in.Lease)
				// Tighter and still sound: the node renews only through
				// voters that hear it, so its lease ends at most one lease
				// after the last time any other voter heard it (their
				// node_down events carry that time). A cut recorded as
				// complete late (nft on a loaded machine) then does not
				// stretch the bound.
				why = " + lease"
				if end, ok := heardLeaseEnd(in.Logs, s.Node, c.From, s.From, in.Lease); ok && end.Before(bound) {
					bound = end
					why = fmt.Sprintf("; last heard by the voters at %s + lease", end.Add(-in.Lease).Format("15:04:05.000"))
				}
			}
			if bound.Before(s.From) {
				bound = s.From
			}
			if bound.Before(s.To) {
				s.To, s.Ended = bound, fmt.Sprintf("%s at %s%s", c.Why, c.From.Format("15:04:05.000"), why)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From.Before(out[j].From) })
	return out
}

// agentKilledBefore returns the last kill of host's agent alone
// (FaultKillAgent) before t.
func agentKilledBefore(faults []Fault, host string, t time.Time) (time.Time, bool) {
	var last time.Time
	for _, f := range faults {
		if f.Kind == FaultKillAgent && f.Host == host && f.At.Before(t) && f.At.After(last) {
			last = f.At
		}
	}
	return last, !last.IsZero()
}

// heardLeaseEnd bounds when node's lease, held at from (a fault began;
// from is no earlier than the span's start spanFrom), ended, from what the
// other voters heard of it: false when their logs cannot tell (a voter
// still heard it at the end of the logs).
//
// Why it is sound: a voter grants only requests that also count as hearing
// the node (both need an echo of its own round within the node timeout,
// which equals the lease in every profile the bed runs), and the holder
// counts a grant from a send that came before; so the lease ends by (the
// last time a voter heard the node while the lease was valid) + lease. Each
// voter's log gives the stretches it heard the node in: from a node_up to
// the last_heard of the node_down that ended it. The end E is the fixpoint
// of "the latest last_heard + lease over every stretch that began before
// E": a stretch that begins only after E began after the lease had lapsed
// (the holder logs that, and a later grant is a new lease and a new span).
//
// An earlier version took each voter's first node_down from a second before
// from. After a one-way partition healed less than a second before a cut
// (seed 77103), the standby's node_down of the partition — voided by the
// node_up that followed — hid the later time it last heard the holder; the
// witness, whose drop landed first, had last heard the holder 76 ms before
// the cut was complete, and that became the bound: the holder's VIP
// answering 7–13 ms past it, within its real lease (node2 still heard it
// and vouched for it), was reported as outside its lease.
func heardLeaseEnd(logs map[string][]events.Event, node string, from, spanFrom time.Time, lease time.Duration) (time.Time, bool) {
	if spanFrom.After(from) {
		from = spanFrom
	}
	var all []heardStretch
	for host, evs := range logs {
		if host != node {
			all = append(all, heardStretches(sortedByTime(evs), host, node)...)
		}
	}
	end := time.Time{}
	for _, h := range all {
		if !h.from.After(from) && h.last.Add(lease).After(end) {
			end = h.last.Add(lease)
		}
	}
	for changed := true; changed; {
		changed = false
		for _, h := range all {
			if h.from.Before(end) && (h.open || h.last.Add(lease).After(end)) {
				if h.open {
					return time.Time{}, false // heard until the end of the logs
				}
				end, changed = h.last.Add(lease), true
			}
		}
	}
	if end.IsZero() {
		return time.Time{}, false // nobody ever heard it: no bound from hearing
	}
	for _, h := range all {
		if h.open && !h.from.After(from) {
			return time.Time{}, false
		}
	}
	return end, true
}

// heardStretch is a stretch in which a voter heard a node: from its
// node_up to the last_heard of the node_down that ended it (open: none did).
type heardStretch struct {
	from, last time.Time
	open       bool
}

// heardStretches reads voter's stretches of hearing node from its events
// (in time order). The voter's own restart or stop ends a stretch at that
// event (a killed agent logs no node_down; it heard nothing once dead).
func heardStretches(evs []events.Event, voter, node string) []heardStretch {
	var out []heardStretch
	var cur *heardStretch
	end := func(last time.Time) {
		if cur != nil {
			cur.last, cur.open = last, false
			out = append(out, *cur)
			cur = nil
		}
	}
	for _, e := range evs {
		switch {
		case (e.Kind == events.NodeUp || e.Kind == events.NodeDown) && e.Subject == voter:
			end(e.Time)
		case e.Kind == events.NodeUp && e.Subject == node:
			if cur == nil {
				cur = &heardStretch{from: e.Time, open: true}
			}
		case e.Kind == events.NodeDown && e.Subject == node:
			last := e.Time // conservative when the attribute is missing
			if v, ok := e.Attrs["last_heard"].(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
					last = t
				}
			}
			if cur == nil { // a node_down with no node_up seen: heard until last
				cur = &heardStretch{from: last}
			}
			end(last)
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// startsResource reports whether an event of kind k is a resource of the
// group started on the node.
func startsResource(k events.Kind) bool {
	return k == events.ResStart || k == events.ResRestart
}

func sortedByTime(evs []events.Event) []events.Event {
	out := append([]events.Event(nil), evs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// CheckAudit cross-checks the audit logs (and the client's view) against
// tandem's safety rules and returns every violation:
//   - epochs only grow: each node's lease_acquired epochs, the leader's
//     placements, and group starts across nodes (a start on another node
//     has a higher epoch);
//   - no two nodes hold (and run) a group's lease at once;
//   - the client got answers from a node only while it held the lease.
func CheckAudit(in AuditInput) []string {
	var probs []string
	var all []events.Event
	for host, evs := range in.Logs {
		lastLease := map[string]uint64{}
		for _, e := range sortedByTime(evs) {
			if e.Kind == events.LeaseAcquired {
				if e.Epoch < lastLease[e.Group] {
					probs = append(probs, fmt.Sprintf("%s acquired %s's lease at epoch %d after epoch %d (%s)", host, e.Group, e.Epoch, lastLease[e.Group], e.Time.Format("15:04:05.000")))
				}
				lastLease[e.Group] = e.Epoch
			}
			if e.Kind == events.GroupStarted || e.Kind == events.Placement {
				e.Node = host
				all = append(all, e)
			}
		}
	}
	all = sortedByTime(all)
	lastPlace := map[string]uint64{}
	type start struct {
		node  string
		epoch uint64
	}
	lastStart := map[string]start{}
	for _, e := range all {
		g := e.Group
		switch e.Kind {
		case events.Placement:
			if e.Epoch < lastPlace[g] {
				probs = append(probs, fmt.Sprintf("%s: placement at epoch %d after epoch %d (%s, logged by %s)", g, e.Epoch, lastPlace[g], e.Time.Format("15:04:05.000"), e.Node))
			}
			lastPlace[g] = max(lastPlace[g], e.Epoch)
		case events.GroupStarted:
			if p, ok := lastStart[g]; ok && (e.Epoch < p.epoch || e.Node != p.node && e.Epoch == p.epoch) {
				probs = append(probs, fmt.Sprintf("%s: started on %s at epoch %d after %s started it at epoch %d (%s)", g, e.Node, e.Epoch, p.node, p.epoch, e.Time.Format("15:04:05.000")))
			}
			lastStart[g] = start{e.Node, e.Epoch}
		}
	}
	spans := LeaseSpans(in)
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.Group == b.Group && a.Node != b.Node && b.From.Before(a.To) && a.From.Before(b.To) {
				probs = append(probs, fmt.Sprintf("%s: two lease holders at once: %s and %s", a.Group, a, b))
			}
		}
	}
	for g, tl := range in.Answers {
		reported := map[string]bool{}
		for _, s := range tl.Samples {
			if !s.OK() || reported[s.Node] {
				continue
			}
			if !covered(spans, g, s.Node, s.Sent, in.Slack) {
				reported[s.Node] = true
				probs = append(probs, fmt.Sprintf("%s: %s answered a probe sent at %s outside its lease spans %v", g, s.Node, s.Sent.Format("15:04:05.000"), spansOf(spans, g, s.Node)))
			}
		}
	}
	return probs
}

func covered(spans []LeaseSpan, group, node string, at time.Time, slack time.Duration) bool {
	for _, s := range spans {
		if s.Group == group && s.Node == node && !at.Before(s.From.Add(-slack)) && !at.After(s.To.Add(slack)) {
			return true
		}
	}
	return false
}

func spansOf(spans []LeaseSpan, group, node string) []string {
	var out []string
	for _, s := range spans {
		if s.Group == group && s.Node == node {
			out = append(out, s.String())
		}
	}
	return out
}

// Explained reports whether a flip-back the client saw (a node answering
// between two answers of another) is two legitimate moves in quick
// succession rather than two holders: the node that answered in between
// held the group's lease then — one of its spans overlaps its answers. A
// node waking from a freeze with a stale VIP has no such span.
func Explained(c probe.Conflict, spans []LeaseSpan, group string, slack time.Duration) bool {
	if c.Kind != probe.FlipBack {
		return false
	}
	for _, s := range spans {
		if s.Group == group && s.Node == c.Node && !s.From.After(c.To.Add(slack)) && !s.To.Before(c.From.Add(-slack)) {
			return true
		}
	}
	return false
}
