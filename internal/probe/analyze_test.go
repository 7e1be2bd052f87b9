package probe

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// timeline builds one probe every 10 ms from 0 to 1000 ms, answered by
// who(t) after 1 ms ("" = no answer, done after the 200 ms timeout).
func timeline(who func(ms int) string) []Sample {
	var out []Sample
	for t := 0; t < 1000; t += 10 {
		s := Sample{Target: "vip", Sent: at(t), Done: at(t + 1), Node: who(t)}
		if s.Node == "" {
			s.Done = at(t + 200)
			s.Err = "timeout"
		}
		out = append(out, s)
	}
	return out
}

func TestCleanFailover(t *testing.T) {
	s := timeline(func(ms int) string {
		switch {
		case ms < 300:
			return "node1"
		case ms < 480:
			return ""
		}
		return "node2"
	})
	r := Analyze(s, []ARPSample{{At: at(100), MACs: []string{"aa"}}}, at(305), 10*time.Millisecond)
	if !r.Moved || r.SplitBrain || r.Before != "node1" || r.After != "node2" {
		t.Fatalf("%+v", r)
	}
	// last answer done at 291, first new answer done at 481
	if r.UnavailableMs != 190 || r.FailoverMs != 176 {
		t.Fatalf("unavailable %v failover %v", r.UnavailableMs, r.FailoverMs)
	}
	// Probes sent at 300, 310, … 470 got no answer, all in the outage.
	if r.Failed != 18 || r.FailedInOutage != 18 {
		t.Fatalf("failed %d, in the outage %d; want 18 and 18", r.Failed, r.FailedInOutage)
	}
}

// With a target per node (the loopback demo), the standby's address fails
// before the failover and the old node's after it: those failures are not
// the outage, which only the probes sent while neither answered are.
func TestFailedProbesOutsideTheOutage(t *testing.T) {
	var s []Sample
	for ms := 0; ms < 1000; ms += 10 {
		for _, target := range []string{"node1", "node2"} {
			serving := (target == "node1" && ms < 300) || (target == "node2" && ms >= 480)
			smp := Sample{Target: target, Sent: at(ms), Done: at(ms + 1)}
			if serving {
				smp.Node = target
			} else {
				smp.Err = "connection refused"
			}
			s = append(s, smp)
		}
	}
	r := Analyze(s, nil, at(305), 10*time.Millisecond)
	if !r.Moved || r.SplitBrain {
		t.Fatalf("%+v", r)
	}
	// 200 probes, 82 answered: node2's 30 before, node1's 52 after and
	// both targets' 18 rounds between 300 and 470.
	if r.Failed != 118 || r.FailedInOutage != 36 {
		t.Fatalf("failed %d, in the outage %d; want 118 and 36", r.Failed, r.FailedInOutage)
	}
}

func TestOldNodeAnsweringAfterTakeoverIsSplitBrain(t *testing.T) {
	s := timeline(func(ms int) string {
		switch {
		case ms < 300:
			return "node1"
		case ms < 500:
			return "node2"
		case ms < 520:
			return "node1" // the frozen primary woke up and served
		}
		return "node2"
	})
	r := Analyze(s, nil, at(295), 10*time.Millisecond)
	if !r.SplitBrain || len(r.Why) == 0 {
		t.Fatalf("%+v", r)
	}
}

func TestTwoNodesInOneIntervalIsSplitBrain(t *testing.T) {
	s := timeline(func(int) string { return "node1" })
	s = append(s, Sample{Target: "other", Sent: at(502), Done: at(503), Node: "node2"})
	if r := Analyze(s, nil, at(900), 10*time.Millisecond); !r.SplitBrain {
		t.Fatalf("%+v", r)
	}
}

func TestTwoMACsIsSplitBrain(t *testing.T) {
	s := timeline(func(int) string { return "node1" })
	r := Analyze(s, []ARPSample{{At: at(5), MACs: []string{"aa", "bb"}}}, at(900), 10*time.Millisecond)
	if !r.SplitBrain || r.Moved {
		t.Fatalf("%+v", r)
	}
}
