package probe

import (
	"strings"
	"testing"
	"time"
)

var checks = Checks{Interval: 10 * time.Millisecond, MinTenure: 300 * time.Millisecond,
	NodeOfMAC: func(m string) string { return map[string]string{"aa": "node1", "bb": "node2"}[m] }}

// longTimeline is timeline over 0..3000 ms.
func longTimeline(who func(ms int) string) Timeline {
	var tl Timeline
	for t := 0; t < 3000; t += 10 {
		s := Sample{Target: "vip", Sent: at(t), Done: at(t + 1), Node: who(t)}
		if s.Node == "" {
			s.Done, s.Err = at(t+200), "timeout"
		}
		tl.Samples = append(tl.Samples, s)
	}
	return tl
}

func TestTwoLegitimateMovesAreNoConflict(t *testing.T) {
	// Failover at 500, failback 1.5 s later: two moves, no split brain.
	tl := longTimeline(func(ms int) string {
		switch {
		case ms < 500:
			return "node1"
		case ms < 700:
			return ""
		case ms < 2200:
			return "node2"
		case ms < 2250:
			return ""
		}
		return "node1"
	})
	if c := tl.Conflicts(checks); len(c) != 0 {
		t.Fatalf("conflicts %v", c)
	}
	if m := tl.Moves(); strings.Join(m, ",") != "node1→node2,node2→node1" {
		t.Fatalf("moves %v", m)
	}
	o := tl.Outage(at(505), at(1500))
	// last answer 491, first new answer (sent 700) done 701
	if o.Ms != 210 || o.Before != "node1" || o.After != "node2" || !o.Answered {
		t.Fatalf("%+v", o)
	}
	if o := tl.Outage(at(2200), at(3000)); o.Ms != 60 || o.After != "node1" {
		t.Fatalf("failback %+v", o)
	}
}

func TestThawedNodeAnsweringOnceIsAFlipBack(t *testing.T) {
	tl := longTimeline(func(ms int) string {
		switch {
		case ms < 500:
			return "node1"
		case ms < 700:
			return ""
		case ms == 1500:
			return "node1" // frozen primary woke up with the VIP still up
		}
		return "node2"
	})
	c := tl.Conflicts(checks)
	if len(c) != 1 || !strings.Contains(c[0].Why, "node1 answered HTTP (1 times) between two answers of node2 only 19 ms apart") {
		t.Fatalf("%v", c)
	}
}

func TestARPFlipBackAndTwoMACs(t *testing.T) {
	var tl Timeline
	for ms := 0; ms < 1000; ms += 20 {
		macs := []string{"aa"}
		switch {
		case ms >= 400 && ms < 600:
			macs = []string{"bb"}
		case ms == 600:
			macs = []string{"aa", "bb"}
		}
		tl.ARPs = append(tl.ARPs, ARPSample{At: at(ms), MACs: macs})
	}
	c := tl.Conflicts(checks)
	if len(c) != 2 {
		t.Fatalf("%v", c)
	}
	// node2 held the address for 200 ms between node1's answers (flip
	// back), then both answered one request.
	if !strings.Contains(c[0].Why, "node2 answered ARP (10 times) between two answers of node1 only 240 ms apart") ||
		!strings.Contains(c[1].Why, "[node1 node2]") {
		t.Fatalf("%v", c)
	}
}

func TestOutageWithNoAnswerRunsToTheEnd(t *testing.T) {
	tl := longTimeline(func(ms int) string {
		if ms < 1000 {
			return "node1"
		}
		return ""
	})
	o := tl.Outage(at(1000), at(2000))
	if o.Answered || o.Ms != 1009 || !o.End.IsZero() || o.Before != "node1" {
		t.Fatalf("%+v", o)
	}
}

func TestOutageWithoutFaultIsTheProbeGap(t *testing.T) {
	tl := longTimeline(func(int) string { return "node1" })
	if o := tl.Outage(at(1000), at(2000)); o.Ms != 10 || o.After != "node1" {
		t.Fatalf("%+v", o)
	}
	if n := tl.AnswersFrom("node1", at(0), at(100)); n != 10 {
		t.Fatalf("answers %d", n)
	}
	if s, ok := tl.LastAnswer(); !ok || !s.Sent.Equal(at(2990)) {
		t.Fatalf("%v %v", s, ok)
	}
}
