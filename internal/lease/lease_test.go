package lease

import (
	"math/rand"
	"sort"
	"testing"
	"time"
)

var (
	t0 = time.Unix(1_000_000, 0)
	p  = Params{Duration: 150 * time.Millisecond, Drift: 0.01}
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestVoterRules(t *testing.T) {
	v := NewVoter(p, t0)
	now := t0.Add(ms(10))
	if d := v.Grant(now, "g", "a", 1, "a", 1); d != RefusedGrace {
		t.Fatalf("during grace: %v", d)
	}
	now = t0.Add(p.GraceDuration())
	if d := v.Grant(now, "g", "a", 1, "b", 1); d != RefusedNotHolder {
		t.Fatalf("state names b: %v", d)
	}
	if d := v.Grant(now, "g", "a", 1, "b", 2); d != RefusedNotHolder {
		t.Fatalf("state has a newer epoch: %v", d)
	}
	if d := v.Grant(now, "g", "a", 3, "b", 2); d != RefusedNotHolder {
		t.Fatalf("a voter behind the requester must not trust it: %v", d)
	}
	if d := v.Grant(now, "g", "a", 1, "a", 1); d != Granted {
		t.Fatalf("first grant: %v", d)
	}
	// State moves to b at epoch 2: a's promise still binds until it ends.
	if d := v.Grant(now.Add(ms(100)), "g", "b", 2, "b", 2); d != RefusedPromised {
		t.Fatalf("b while a is promised: %v", d)
	}
	if d := v.Grant(now.Add(p.Duration), "g", "b", 2, "b", 2); d != Granted {
		t.Fatalf("b after a's promise: %v", d)
	}
	// A release lets the next holder in at once.
	v.Release("g", "b", 2)
	if d := v.Grant(now.Add(p.Duration+ms(1)), "g", "a", 3, "a", 3); d != Granted {
		t.Fatalf("after release: %v", d)
	}
	// A release of another epoch changes nothing.
	v.Release("g", "a", 2)
	if _, ok := v.Promised(now.Add(p.Duration+ms(2)), "g"); !ok {
		t.Fatal("foreign release dropped the promise")
	}
}

func TestClaimQuorum(t *testing.T) {
	c := NewClaim(p, "g", 1, 2)
	c.Granted("a", t0)
	if _, ok := c.Until(); ok {
		t.Fatal("one grant of two needed")
	}
	c.Granted("b", t0.Add(ms(30)))
	c.Granted("a", t0.Add(ms(50)))
	c.Granted("a", t0.Add(ms(40))) // older grant arriving late changes nothing
	until, ok := c.Until()
	if !ok || !until.Equal(t0.Add(ms(30)).Add(p.HolderDuration())) {
		t.Fatalf("until = %v, want second-newest grant + holder duration", until.Sub(t0))
	}
	if !c.Valid(until.Add(-1)) || c.Valid(until) {
		t.Fatal("validity boundary")
	}
}

// TestNoTwoHolders is a discrete-event simulation: random schedules of
// requests, grants, lost and reordered messages, releases and state changes
// across 3 voters with clock rates skewed within the drift bound; it checks
// in real time that no two holders' leases ever overlap (S1).
func TestNoTwoHolders(t *testing.T) {
	for seed := int64(1); seed <= 300; seed++ {
		runSchedule(t, seed)
	}
}

type simEvent struct {
	at  time.Duration
	seq int
	do  func()
}

type sim struct {
	now   time.Duration
	queue []simEvent
	seq   int
}

func (s *sim) after(d time.Duration, f func()) {
	s.seq++
	s.queue = append(s.queue, simEvent{s.now + d, s.seq, f})
}

func (s *sim) run(until time.Duration) {
	for len(s.queue) > 0 {
		sort.Slice(s.queue, func(i, j int) bool {
			if s.queue[i].at != s.queue[j].at {
				return s.queue[i].at < s.queue[j].at
			}
			return s.queue[i].seq < s.queue[j].seq
		})
		e := s.queue[0]
		if e.at > until {
			return
		}
		s.queue = s.queue[1:]
		s.now = e.at
		e.do()
	}
}

func runSchedule(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	nodes := []string{"a", "b", "w"}
	rate := map[string]float64{} // local clock = rate × real time, within the drift bound
	for _, n := range nodes {
		rate[n] = 1 + float64(rng.Intn(3)-1)*p.Drift/2 // extremes make boundary cases
	}
	// delay is a message's one-way delay: often none, to hit the boundaries.
	delay := func() time.Duration {
		if rng.Intn(3) == 0 {
			return 0
		}
		return time.Duration(rng.Intn(30_000)) * time.Microsecond
	}
	local := func(n string, real time.Duration) time.Time {
		return t0.Add(time.Duration(float64(real) * rate[n]))
	}
	toReal := func(n string, l time.Time) time.Duration {
		return time.Duration(float64(l.Sub(t0)) / rate[n])
	}
	s := &sim{}
	voters := map[string]*Voter{}
	state := map[string][2]any{} // each node's applied (holder, epoch)
	for _, n := range nodes {
		voters[n] = NewVoter(p, local(n, 0))
		state[n] = [2]any{"a", uint64(1)}
	}
	// The replicated log: each change reaches each node after its own delay;
	// a node applies only changes newer than what it has (epochs only grow).
	epoch := uint64(1)
	for at := ms(100); at < ms(3000); at += ms(50 + rng.Intn(400)) {
		epoch++
		holder, e := []string{"a", "b", "w"}[rng.Intn(3)], epoch
		if holder == "w" {
			holder = "" // stopped
		}
		for _, n := range nodes {
			n := n
			s.seq++
			s.queue = append(s.queue, simEvent{at + ms(rng.Intn(200)), s.seq, func() {
				if state[n][1].(uint64) < e {
					state[n] = [2]any{holder, e}
				}
			}})
		}
	}
	type interval struct {
		holder   string
		epoch    uint64
		from, to time.Duration
	}
	var held []interval
	claims := map[string]*Claim{}
	released := map[string]bool{}
	var tick func(h string)
	tick = func(h string) {
		defer s.after(time.Duration(1+rng.Intn(20_000))*time.Microsecond, func() { tick(h) })
		sh, se := state[h][0].(string), state[h][1].(uint64)
		if c := claims[h]; c != nil && (sh != h || se != c.Epoch) {
			// No longer the holder: it keeps its lease to its end, or
			// stops now and releases it.
			if rng.Intn(2) == 0 {
				for i := range held {
					if held[i].holder == h && held[i].epoch == c.Epoch && held[i].to > s.now {
						held[i].to = s.now
					}
				}
				for _, v := range nodes {
					v, ep := v, c.Epoch
					s.after(delay(), func() { voters[v].Release("g", h, ep) })
				}
				released[h] = true
			}
			delete(claims, h)
		}
		if sh != h {
			return
		}
		c := claims[h]
		if c == nil {
			c = NewClaim(p, "g", se, Quorum(len(nodes)))
			claims[h] = c
		}
		sent := local(h, s.now)
		for _, v := range nodes {
			v := v
			if rng.Intn(4) == 0 {
				continue // request lost
			}
			s.after(delay(), func() {
				vh, ve := state[v][0].(string), state[v][1].(uint64)
				if voters[v].Grant(local(v, s.now), "g", h, se, vh, ve) != Granted || rng.Intn(4) == 0 {
					return // refused, or ack lost
				}
				s.after(delay(), func() {
					if claims[h] != c {
						return
					}
					c.Granted(v, sent)
					if until, ok := c.Until(); ok && until.After(local(h, s.now)) {
						held = append(held, interval{h, se, s.now, toReal(h, until)})
					}
				})
			})
		}
	}
	s.after(0, func() { tick("a") })
	s.after(0, func() { tick("b") })
	s.run(ms(4000))
	sort.Slice(held, func(i, j int) bool { return held[i].from < held[j].from })
	for i := range held {
		for j := i + 1; j < len(held) && held[j].from < held[i].to; j++ {
			a, b := held[i], held[j]
			if a.holder != b.holder {
				t.Fatalf("seed %d: %s (epoch %d) [%v,%v) overlaps %s (epoch %d) [%v,%v)",
					seed, a.holder, a.epoch, a.from, a.to, b.holder, b.epoch, b.from, b.to)
			}
		}
	}
	if len(held) == 0 {
		t.Fatalf("seed %d: no lease was ever held; the schedule tests nothing", seed)
	}
}

// Two-node claims: extendAlone extends a lease won with both grants by
// the holder's own, but does not win one; solo wins it alone; going back
// to both grants keeps the lease won to its end.
func TestTwoNodeClaim(t *testing.T) {
	c := NewClaim(p, "g", 1, 2)
	c.SetTwoNode(true, false)
	c.Granted("a", t0)
	if c.Valid(t0) {
		t.Fatal("extendAlone won a lease with one grant of two")
	}
	c.Granted("b", t0)
	c.Granted("a", t0.Add(ms(100))) // b lost: a extends alone
	aloneEnd := t0.Add(ms(100) + p.HolderDuration())
	if until, ok := c.Until(); !ok || !until.Equal(aloneEnd) {
		t.Fatalf("extended alone: lease ends %v (ok %v), want %v", until, ok, aloneEnd)
	}
	c.SetTwoNode(false, false) // back to both grants; b's last one is old
	if until, ok := c.Until(); !ok || !until.Equal(aloneEnd) {
		t.Fatalf("after going back to two grants the lease ends %v (ok %v), want still %v", until, ok, aloneEnd)
	}
	c.Granted("a", t0.Add(ms(200)))
	if until, _ := c.Until(); !until.Equal(aloneEnd) {
		t.Fatalf("one grant of two extended the lease to %v", until)
	}
	c.Granted("b", t0.Add(ms(200)))
	if until, _ := c.Until(); !until.Equal(t0.Add(ms(200) + p.HolderDuration())) {
		t.Fatalf("both grants: lease ends %v", until)
	}

	s := NewClaim(p, "g", 2, 2)
	s.SetTwoNode(false, true)
	s.Granted("b", t0)
	if !s.Valid(t0.Add(ms(10))) {
		t.Fatal("solo: not won with the holder's own grant")
	}
	if NewClaim(p, "g", 1, 1).Valid(t0) {
		t.Fatal("a claim never granted is valid")
	}
}

func TestForgetDropsOnlyThatHoldersPromises(t *testing.T) {
	v := NewVoter(p, t0)
	now := t0.Add(p.GraceDuration())
	v.Grant(now, "g1", "a", 1, "a", 1)
	v.Grant(now, "g2", "b", 1, "b", 1)
	if d := v.Grant(now, "g1", "b", 2, "b", 2); d != RefusedPromised {
		t.Fatalf("before Forget: %v", d)
	}
	v.Forget("a")
	if d := v.Grant(now, "g1", "b", 2, "b", 2); d != Granted {
		t.Fatalf("after Forget(a): %v", d)
	}
	if _, ok := v.Promised(now, "g2"); !ok {
		t.Fatal("Forget(a) dropped b's promise")
	}
}
