package consensus

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"tandem/internal/logcheck"
)

func TestKeyJudgeTakesTheMajority(t *testing.T) {
	type seen struct {
		peer  string
		agree bool
	}
	for _, tc := range []struct {
		name   string
		voters int
		seen   []seen // in order; the last one is a mismatch and judged
		want   keyVerdict
	}{
		{"wrong key, first peer", 3, []seen{{"a", false}}, keyUndecided},
		{"wrong key, both peers", 3, []seen{{"a", false}, {"w", false}}, keyOurs},
		{"healthy, peer not yet seen", 3, []seen{{"b", false}}, keyUndecided},
		{"healthy, agrees with the witness", 3, []seen{{"w", true}, {"b", false}}, keyTheirs},
		{"a peer that changed its key", 3, []seen{{"b", true}, {"w", true}, {"b", false}}, keyTheirs},
		{"two voters alone cannot tell", 2, []seen{{"b", false}}, keyUndecided},
		{"five voters, two wrong", 5, []seen{{"b", true}, {"c", true}, {"d", false}, {"e", false}}, keyTheirs},
		{"five voters, we are alone", 5, []seen{{"b", false}, {"c", false}, {"d", false}}, keyOurs},
	} {
		k := newKeyJudge(tc.voters)
		var got keyVerdict
		for _, s := range tc.seen {
			if s.agree {
				k.agreed(s.peer)
			} else {
				got = k.differs(s.peer)
			}
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Three voters, b with another cluster key. Each side of a failed
// handshake only sees that the other's certificate is not derived from its
// key; before, b logged that its healthy peers did not hold the key, every
// time raft retried. Now the majority decides the wording: a and w say b
// presents a certificate not derived from our key (a wrong key on b?), b
// says its own key does not match the cluster's. Each is said once, not at
// every retry (raft retries every few hundred milliseconds).
func TestWrongKeyNodeIsToldItIsTheOneWrong(t *testing.T) {
	good, bad := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keys := map[string][]byte{"a": good, "w": good, "b": bad}
	names := []string{"a", "b", "w"}
	voters := loopbackVoters(t, names...)
	recs := map[string]*logcheck.Recorder{}
	members := map[string]*Consensus{}
	for _, n := range names {
		log, rec := logcheck.New(t, slog.LevelInfo)
		recs[n] = rec
		c, err := Start(Config{Self: n, Voters: voters, Key: keys[n], Timeout: 100 * time.Millisecond, Logger: log.With("node", n)})
		if err != nil {
			t.Fatal(err)
		}
		members[n] = c
		t.Cleanup(func() { c.Shutdown() })
	}
	says := func(n, text string) bool {
		for _, l := range recs[n].Lines() {
			if msg, _ := logcheck.Field(l, "msg"); strings.Contains(msg, text) {
				return true
			}
		}
		return false
	}
	// Inbound ("node b (127.0.0.1) refused our certificate") or outbound
	// ("node b (127.0.0.1:PORT) presents …"): whichever a judged first (the
	// other is then a repeat of the same verdict, held back).
	healthy := "b (127.0.0.1"
	deadline := time.Now().Add(10 * time.Second)
	for !(says("a", healthy) && says("a", "a wrong key on that node?") && says("w", "a wrong key on that node?") &&
		says("b", "our key does not match the cluster's")) {
		if time.Now().After(deadline) {
			for _, n := range names {
				t.Logf("%s:\n%s", n, strings.Join(recs[n].Lines(), "\n"))
			}
			t.Fatal("the voters did not say whose key is wrong")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !members["a"].IsLeader() && !members["w"].IsLeader() {
		time.Sleep(time.Second) // a and w, who agree, elect a leader between them
	}
	time.Sleep(2 * time.Second) // 20 raft timeouts of retries
	for _, n := range names {
		kinds := map[string]int{}
		for _, l := range recs[n].Lines() {
			msg, _ := logcheck.Field(l, "msg")
			lvl, _ := logcheck.Field(l, "level")
			peer := ""
			for _, k := range []string{"peer", "raft.peer", "raft.server-id", "raft.target", "raft.candidate", "raft.from", "raft.id"} {
				if v, ok := logcheck.Field(l, k); ok {
					peer += " " + k + "=" + v
				}
			}
			if n == "b" && strings.Contains(msg, "a wrong key on that node") {
				t.Errorf("b, whose key is wrong, blames a peer: %s", l)
			}
			if n != "b" && strings.Contains(msg, "our key does not match") {
				t.Errorf("%s, whose key is right, blames itself: %s", n, l)
			}
			if lvl == "ERROR" || lvl == "WARN" {
				kinds[fmt.Sprintf("%s %s", msg, peer)]++
			}
		}
		if testing.Verbose() {
			t.Logf("%s:\n%s", n, strings.Join(recs[n].Lines(), "\n"))
		}
		for k, c := range kinds {
			if c > 1 {
				t.Errorf("%s logged %q %d times in a few seconds; want once a minute", n, k, c)
			}
		}
	}
}
