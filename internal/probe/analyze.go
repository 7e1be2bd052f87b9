package probe

import (
	"fmt"
	"sort"
	"time"
)

// Report is what a client saw around one fault.
type Report struct {
	Before string `json:"before"` // node answering before the fault
	After  string `json:"after"`  // node answering after it ("" if none)
	// UnavailableMs: from the last answer before the fault to the first
	// answer after it (by completion time), as the client saw it.
	UnavailableMs float64 `json:"unavailable_ms"`
	// FailoverMs: from the fault to the first answer from another node.
	FailoverMs float64        `json:"failover_ms"`
	Moved      bool           `json:"moved"`
	SplitBrain bool           `json:"split_brain"`
	Why        []string       `json:"why,omitempty"`
	Answers    map[string]int `json:"answers"`
	// Failed counts the probes that got no answer (refused, reset or timed
	// out); FailedInOutage those of them sent while no node served: after
	// the old node's last answered probe and before the first one the new
	// node answered. The others went to an address that was not serving at the
	// time (with one target per node, the standby's) or failed for a
	// reason of their own.
	Failed         int `json:"failed_probes"`
	FailedInOutage int `json:"failed_in_outage"`
}

// Analyze reads a timeline around a fault at fault. A split brain is: the
// old node answering a probe sent after the new node first answered; two
// nodes answering probes sent within the same interval; or two MACs
// answering one ARP request.
func Analyze(samples []Sample, arps []ARPSample, fault time.Time, interval time.Duration) Report {
	r := Report{Answers: map[string]int{}}
	ok := make([]Sample, 0, len(samples))
	for _, s := range samples {
		if s.OK() {
			ok = append(ok, s)
			r.Answers[s.Node]++
		} else {
			r.Failed++
		}
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Sent.Before(ok[j].Sent) })
	var firstNew *Sample
	for _, s := range ok {
		if !s.Sent.After(fault) {
			r.Before = s.Node
		}
	}
	for i := range ok {
		s := &ok[i]
		if s.Sent.After(fault) && s.Node != r.Before {
			firstNew = s
			r.After = s.Node
			break
		}
	}
	if firstNew != nil {
		r.Moved = true
		r.FailoverMs = ms(firstNew.Done.Sub(fault))
		// The window the client saw: from the old node's last answer to
		// the new node's first.
		var lastOld time.Time
		for _, s := range ok {
			if s.Node == r.Before && s.Done.Before(firstNew.Done) && s.Done.After(lastOld) {
				lastOld = s.Done
			}
		}
		if !lastOld.IsZero() {
			r.UnavailableMs = ms(firstNew.Done.Sub(lastOld))
		}
		for _, s := range ok {
			if s.Node == r.Before && s.Sent.After(firstNew.Done) {
				r.SplitBrain = true
				r.Why = append(r.Why, fmt.Sprintf("%s answered a probe sent %.0f ms after %s took over",
					s.Node, ms(s.Sent.Sub(firstNew.Done)), firstNew.Node))
				break
			}
		}
	}
	r.FailedInOutage = failedInOutage(samples, ok, r.Before, firstNew)
	for i := 0; i+1 < len(ok); i++ {
		a := ok[i]
		for j := i + 1; j < len(ok) && ok[j].Sent.Sub(a.Sent) < interval/2; j++ {
			if ok[j].Node != a.Node {
				r.SplitBrain = true
				r.Why = append(r.Why, fmt.Sprintf("%s and %s both answered probes sent %.1f ms apart", a.Node, ok[j].Node, ms(ok[j].Sent.Sub(a.Sent))))
				i = len(ok)
				break
			}
		}
	}
	for _, a := range arps {
		if len(a.MACs) > 1 {
			r.SplitBrain = true
			r.Why = append(r.Why, fmt.Sprintf("%d MACs answered one ARP request at %s: %v", len(a.MACs), a.At.Format("15:04:05.000"), a.MACs))
			break
		}
	}
	return r
}

// failedInOutage counts the failed samples sent after the last answered
// probe of before and before the first probe the new node answered (until
// the end when there is none).
func failedInOutage(samples, ok []Sample, before string, firstNew *Sample) int {
	var from time.Time
	for _, s := range ok {
		if s.Node == before && (firstNew == nil || s.Sent.Before(firstNew.Sent)) && s.Sent.After(from) {
			from = s.Sent
		}
	}
	n := 0
	for _, s := range samples {
		if !s.OK() && s.Sent.After(from) && (firstNew == nil || s.Sent.Before(firstNew.Sent)) {
			n++
		}
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
