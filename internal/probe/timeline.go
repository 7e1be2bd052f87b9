package probe

import (
	"fmt"
	"sort"
	"time"
)

// Timeline is everything one prober saw of one service over a whole run,
// across any number of faults (Analyze looks at one fault).
type Timeline struct {
	Samples []Sample
	ARPs    []ARPSample
}

// Checks tune the split-brain verdict of a Timeline.
type Checks struct {
	// Interval is the probe interval: two nodes answering probes sent
	// within half of it is a split brain.
	Interval time.Duration
	// MinTenure is the shortest time a node can hold the service between
	// two legitimate moves: X answering, then Y, then X again within it is
	// a split brain (both had the address), not two failovers.
	MinTenure time.Duration
	// NodeOfMAC names the node owning a MAC ("" = unknown, shown as is).
	NodeOfMAC func(mac string) string
}

// Conflict is one piece of evidence that two nodes served at once.
type Conflict struct {
	At   time.Time `json:"at"`
	Why  string    `json:"why"`
	Kind string    `json:"kind"` // TwoMACs, Concurrent or FlipBack
	// For a FlipBack: the node that answered in between, and when its
	// answers started and ended. Two legitimate moves in quick
	// succession look the same; only the cluster's own record of who held
	// the group then can tell them apart.
	Node     string    `json:"node,omitempty"`
	From, To time.Time `json:"-"`
}

// Kinds of Conflict.
const (
	TwoMACs    = "two_macs"
	Concurrent = "concurrent"
	FlipBack   = "flip_back"
)

func (c Conflict) String() string { return c.At.Format("15:04:05.000") + ": " + c.Why }

// Tenure is a run of consecutive answers from one node.
type Tenure struct {
	Node    string    `json:"node"`
	First   time.Time `json:"first"` // when the first answer's probe was sent
	Last    time.Time `json:"last"`  // when the last answer arrived
	Answers int       `json:"answers"`
}

// Tenures splits the answered probes, in the order they were sent, into
// runs by answering node.
func (tl Timeline) Tenures() []Tenure {
	var pts []point
	for _, s := range tl.Samples {
		if s.OK() {
			pts = append(pts, point{sent: s.Sent, done: s.Done, node: s.Node})
		}
	}
	return tenures(pts)
}

type point struct {
	sent, done time.Time
	node       string
}

func tenures(pts []point) []Tenure {
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].sent.Before(pts[j].sent) })
	var out []Tenure
	for _, p := range pts {
		if n := len(out); n > 0 && out[n-1].Node == p.node {
			out[n-1].Answers++
			if p.done.After(out[n-1].Last) {
				out[n-1].Last = p.done
			}
			continue
		}
		out = append(out, Tenure{Node: p.node, First: p.sent, Last: p.done, Answers: 1})
	}
	return out
}

// Moves returns the changes of answering node, in order ("node1→node2").
func (tl Timeline) Moves() []string {
	var out []string
	ts := tl.Tenures()
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i-1].Node+"→"+ts[i].Node)
	}
	return out
}

// Conflicts returns every sign of a split brain in the timeline: two MACs
// answering one ARP request; two nodes answering probes sent within half an
// interval; and, both for HTTP answers and for ARP answers, a node that
// answers again less than MinTenure after another node took over from it.
func (tl Timeline) Conflicts(c Checks) []Conflict {
	name := func(mac string) string {
		if c.NodeOfMAC != nil {
			if n := c.NodeOfMAC(mac); n != "" {
				return n
			}
		}
		return mac
	}
	var out []Conflict
	var arpPts []point
	for _, a := range tl.ARPs {
		switch len(a.MACs) {
		case 0:
		case 1:
			arpPts = append(arpPts, point{sent: a.At, done: a.At, node: name(a.MACs[0])})
		default:
			var names []string
			for _, m := range a.MACs {
				names = append(names, name(m))
			}
			out = append(out, Conflict{At: a.At, Kind: TwoMACs, Why: fmt.Sprintf("%d MACs answered one ARP request for the VIP: %v", len(a.MACs), names)})
		}
	}
	var ok []Sample
	for _, s := range tl.Samples {
		if s.OK() {
			ok = append(ok, s)
		}
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Sent.Before(ok[j].Sent) })
	for i := 0; i+1 < len(ok); i++ {
		for j := i + 1; j < len(ok) && ok[j].Sent.Sub(ok[i].Sent) < c.Interval/2; j++ {
			if ok[j].Node != ok[i].Node {
				out = append(out, Conflict{At: ok[j].Sent, Kind: Concurrent, Why: fmt.Sprintf("%s and %s both answered probes sent %.1f ms apart",
					ok[i].Node, ok[j].Node, ms(ok[j].Sent.Sub(ok[i].Sent)))})
				break
			}
		}
	}
	var httpPts []point
	for _, s := range ok {
		httpPts = append(httpPts, point{sent: s.Sent, done: s.Done, node: s.Node})
	}
	out = append(out, flipBacks(tenures(httpPts), c.MinTenure, "answered HTTP")...)
	out = append(out, flipBacks(tenures(arpPts), c.MinTenure, "answered ARP")...)
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// flipBacks finds X, Y, X runs where X's return comes less than minTenure
// after its previous answer: Y cannot have taken over and handed back in
// that time, so both held the address.
func flipBacks(ts []Tenure, minTenure time.Duration, what string) []Conflict {
	var out []Conflict
	for i := 1; i+1 < len(ts); i++ {
		x, y, back := ts[i-1], ts[i], ts[i+1]
		if x.Node != back.Node {
			continue
		}
		if gap := back.First.Sub(x.Last); gap < minTenure {
			out = append(out, Conflict{At: y.First, Kind: FlipBack, Node: y.Node, From: y.First, To: y.Last,
				Why: fmt.Sprintf("%s %s (%d times) between two answers of %s only %.0f ms apart", y.Node, what, y.Answers, x.Node, ms(gap))})
		}
	}
	return out
}

// Outage is the longest time without an answer around a fault.
type Outage struct {
	// Ms is the longest gap between two consecutive answers (by arrival)
	// from the last answer before From to the first answer after it, and
	// on up to To. With no answer after From at all it runs to To.
	Ms     float64   `json:"ms"`
	Start  time.Time `json:"start"` // the answer that opened the gap
	End    time.Time `json:"end"`   // the answer that closed it (zero: none)
	Before string    `json:"before"`
	After  string    `json:"after"` // who closed the gap
	// Answered: some probe got an answer after From.
	Answered bool `json:"answered"`
}

// Outage measures the client-seen unavailable window of a fault at from,
// looking no further than to.
func (tl Timeline) Outage(from, to time.Time) Outage {
	var ok []Sample
	for _, s := range tl.Samples {
		if s.OK() && !s.Done.After(to) {
			ok = append(ok, s)
		}
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Done.Before(ok[j].Done) })
	var o Outage
	prev := -1
	for i, s := range ok {
		if !s.Done.After(from) {
			prev = i
		}
	}
	start := from
	if prev >= 0 {
		start, o.Before = ok[prev].Done, ok[prev].Node
	}
	o.Start = start
	last := start
	lastNode := o.Before
	for _, s := range ok[prev+1:] {
		o.Answered = true
		if gap := s.Done.Sub(last); ms(gap) > o.Ms {
			o.Ms, o.Start, o.End, o.Before, o.After = ms(gap), last, s.Done, lastNode, s.Node
		}
		last, lastNode = s.Done, s.Node
	}
	// A gap still open at to (the service never came back) counts too.
	if gap := to.Sub(last); ms(gap) > o.Ms {
		o.Ms, o.Start, o.End, o.Before, o.After = ms(gap), last, time.Time{}, lastNode, ""
	}
	return o
}

// AnswersFrom counts the probes sent in [from, to) that node answered.
func (tl Timeline) AnswersFrom(node string, from, to time.Time) int {
	n := 0
	for _, s := range tl.Samples {
		if s.Node == node && !s.Sent.Before(from) && s.Sent.Before(to) {
			n++
		}
	}
	return n
}

// LastAnswer returns the newest answered sample (by sending time).
func (tl Timeline) LastAnswer() (Sample, bool) {
	var best Sample
	found := false
	for _, s := range tl.Samples {
		if s.OK() && (!found || s.Sent.After(best.Sent)) {
			best, found = s, true
		}
	}
	return best, found
}
