package consensus

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"tandem/internal/state"
)

// A follower keeps its forward connection to the leader for the next
// proposal, and a kept connection that broke while idle costs the
// proposal nothing: it goes on a new one, once.
func TestForwardKeepsItsConnection(t *testing.T) {
	cl := startClusterWith(t, bytes.Repeat([]byte{1}, 32), "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kept := func(c *Consensus) []net.Conn {
		c.fwd.mu.Lock()
		defer c.fwd.mu.Unlock()
		var cs []net.Conn
		for _, ics := range c.fwd.idle {
			for _, ic := range ics {
				cs = append(cs, ic.c)
			}
		}
		return cs
	}
	// A proposal is forwarded only while its proposer follows; on a busy
	// machine leadership may move between the calls, so try a few times.
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("five tries, never two proposals forwarded on one connection")
		}
		f := cl.follower(t)
		place := func(group string) {
			t.Helper()
			if err := f.Propose(ctx, state.Command{Op: state.OpPlace, Group: group, Holder: "a"}); err != nil {
				t.Fatalf("place %s: %v", group, err)
			}
		}
		place(fmt.Sprintf("a%d", try))
		first := kept(f)
		place(fmt.Sprintf("b%d", try))
		second := kept(f)
		if len(first) != 1 || len(second) != 1 || f.IsLeader() {
			continue // not forwarded both times
		}
		if first[0] != second[0] {
			t.Fatal("the second forwarded proposal dialled a new connection")
		}
		second[0].Close() // broken while idle
		group := fmt.Sprintf("c%d", try)
		place(group)
		if f.IsLeader() {
			continue
		}
		if third := kept(f); len(third) != 1 || third[0] == second[0] {
			t.Fatalf("after a broken kept connection: kept %v, want one new connection", third)
		}
		cl.appliedOnce(t, group, func(g *state.Group) bool { return g.Holder == "a" && g.Epoch == 1 }, state.OpPlace)
		return
	}
}
