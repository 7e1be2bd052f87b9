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

// LeaseSpan is a stretch in which a node held a group's lease and ran it:
// from its lease_acquired (or, without one, its group_started) to the
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
				for g := range cur {
					closeSpan(g, e.Time, "agent "+map[bool]string{true: "restarted", false: "stopped"}[e.Kind == events.NodeUp])
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
			bound := c.From
			switch c.Why {
			case FaultKill:
			case FaultFreeze:
				// A shorter freeze still outlived the lease when the
				// voters had stopped hearing the node a lease before the
				// thaw (it renews only through them): then it acted last
				// when frozen, as after a long one.
				if !long {
					heard, ok := lastHeardBy(in.Logs, s.Node, c.From, s.From)
					if !ok || c.To.Before(heard.Add(in.Lease)) {
						continue
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
				if heard, ok := lastHeardBy(in.Logs, s.Node, c.From, s.From); ok && heard.Add(in.Lease).Before(bound) {
					bound = heard.Add(in.Lease)
				}
			}
			if bound.Before(s.From) {
				bound = s.From
			}
			if bound.Before(s.To) {
				s.To, s.Ended = bound, fmt.Sprintf("%s at %s", c.Why, c.From.Format("15:04:05.000"))
				if !bound.Equal(c.From) {
					s.Ended += " + lease"
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From.Before(out[j].From) })
	return out
}

// lastHeardBy returns the latest "last heard" that any other voter
// reported for node in a node_down event around a fault at from, logged
// after the lease span began at spanFrom (an earlier one is about an
// earlier episode: a kill and restart just before, say). Only when every
// other voter logged one: a voter that still hears the node may still
// renew its lease. Each voter's first such event counts (a later one is
// about a later episode).
func lastHeardBy(logs map[string][]events.Event, node string, from, spanFrom time.Time) (time.Time, bool) {
	var latest time.Time
	for host, evs := range logs {
		if host == node {
			continue
		}
		found := false
		for _, e := range evs {
			if e.Kind != events.NodeDown || e.Subject != node || e.Time.Before(from.Add(-time.Second)) || e.Time.Before(spanFrom) {
				continue
			}
			v, ok := e.Attrs["last_heard"].(string)
			if !ok {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil || t.After(from.Add(time.Second)) {
				continue
			}
			if t.After(latest) {
				latest = t
			}
			found = true
			break
		}
		if !found {
			return time.Time{}, false // this voter may still hear the node
		}
	}
	return latest, !latest.IsZero()
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
