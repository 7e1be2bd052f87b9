package fence

import (
	"errors"
	"math/rand"
	"sort"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func randomTopology(r *rand.Rand) Topology {
	t := Topology{Node: "node2", RetryDelay: time.Duration(r.Intn(3)) * time.Second}
	for l := 0; l < 1+r.Intn(3); l++ {
		var level []Step
		for d := 0; d < 1+r.Intn(3); d++ {
			level = append(level, Step{
				Device:  string(rune('a'+l)) + string(rune('0'+d)),
				Method:  Method(r.Intn(2)),
				Timeout: time.Duration(1+r.Intn(5)) * time.Second,
				Retries: r.Intn(3),
			})
		}
		t.Levels = append(t.Levels, level)
	}
	return t
}

// answer is a reply the fake world will deliver at a time.
type answer struct {
	at  time.Time
	res Result
}

// accepted is an answer the machine took (its run was pending and not
// past its deadline), as the test saw it: the reference for confirmation.
type accepted struct {
	run Run
	res Result
}

// confirmedByReference says whether the accepted answers prove that every
// device of level (1-based) confirmed: a reboot that exited 0, or an off
// that exited 0 followed by a status off in the same attempt.
func confirmedByReference(topo Topology, level int, acc []accepted) bool {
	for _, s := range topo.Levels[level-1] {
		ok := false
		offOK := map[int]bool{}
		for _, a := range acc {
			if a.run.Level != level || a.run.Device != s.Device || a.res.Err != nil {
				continue
			}
			switch a.run.Action {
			case Reboot:
				ok = true
			case Off:
				offOK[a.run.Attempt] = true
			case Status:
				if a.res.Power == PowerOff && offOK[a.run.Attempt] {
					ok = true
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestTopologyProperties drives the machine over random topologies and
// random device behaviour: answers that succeed, fail, lie (status on or
// unknown after off), come late, twice, or never.
func TestTopologyProperties(t *testing.T) {
	for seed := int64(1); seed <= 3000; seed++ {
		r := rand.New(rand.NewSource(seed))
		topo := randomTopology(r)
		m := NewMachine(topo)
		now := t0
		var queue []answer
		var acc []accepted
		var runs []Run
		runsOf := map[[2]string]int{}
		deliver := func(run *Run) {
			if run == nil {
				return
			}
			runs = append(runs, *run)
			if run.Action != Status {
				runsOf[[2]string{string(rune('0' + run.Level)), run.Device}]++
			}
			res := Result{ID: run.ID}
			switch r.Intn(10) {
			case 0:
				return // hangs: never answers
			case 1, 2:
				res.Err = errors.New("agent failed")
			default:
				res.Power = []Power{PowerOff, PowerOff, PowerOff, PowerOn, PowerUnknown}[r.Intn(5)]
			}
			s := topo.Levels[run.Level-1][0]
			for _, x := range topo.Levels[run.Level-1] {
				if x.Device == run.Device {
					s = x
				}
			}
			delay := time.Duration(r.Int63n(int64(s.Timeout) * 3 / 2))
			queue = append(queue, answer{at: now.Add(delay), res: res})
			if r.Intn(8) == 0 { // duplicated
				queue = append(queue, answer{at: now.Add(delay + time.Millisecond), res: res})
			}
		}
		deliver(m.Start(now))
		for steps := 0; ; steps++ {
			if steps > 10000 {
				t.Fatalf("seed %d: no end after %d steps", seed, steps)
			}
			if _, done := m.Done(); done && len(queue) == 0 {
				break
			}
			sort.SliceStable(queue, func(i, j int) bool { return queue[i].at.Before(queue[j].at) })
			next := m.NextDeadline()
			if len(queue) > 0 && (next.IsZero() || !queue[0].at.After(next)) {
				a := queue[0]
				queue = queue[1:]
				now = a.at
				before := m.Pending()
				if before != nil && before.ID == a.res.ID && now.Before(before.Deadline) {
					acc = append(acc, accepted{*before, a.res})
				}
				run := m.Step(now, a.res)
				if _, done := m.Done(); done && run != nil {
					t.Fatalf("seed %d: a run after the outcome", seed)
				}
				deliver(run)
				continue
			}
			if next.IsZero() {
				t.Fatalf("seed %d: machine waits for nothing and is not done", seed)
			}
			// Sometimes an early tick, which must change nothing.
			if r.Intn(4) == 0 && next.After(now) {
				early := now.Add(time.Duration(r.Int63n(int64(next.Sub(now)))))
				if run := m.Tick(early); run != nil {
					t.Fatalf("seed %d: an early tick ran %v", seed, run)
				}
				now = early
			}
			now = next
			deliver(m.Tick(now))
		}
		out, _ := m.Done()

		// Never confirmed unless every device of one level confirmed.
		if out.Confirmed && !confirmedByReference(topo, out.Level, acc) {
			t.Fatalf("seed %d: confirmed at level %d without every device's confirmation\nruns %+v\naccepted %+v", seed, out.Level, runs, acc)
		}
		// Not confirmed only if no level could be.
		if !out.Confirmed {
			for l := range topo.Levels {
				if confirmedByReference(topo, l+1, acc) {
					t.Fatalf("seed %d: level %d confirmed by the reference but outcome %+v", seed, l+1, out)
				}
			}
		}
		// Levels in order, retries bounded.
		for i := 1; i < len(runs); i++ {
			if runs[i].Level < runs[i-1].Level {
				t.Fatalf("seed %d: level %d after level %d", seed, runs[i].Level, runs[i-1].Level)
			}
		}
		for l, level := range topo.Levels {
			for _, s := range level {
				if n := runsOf[[2]string{string(rune('0' + l + 1)), s.Device}]; n > 1+s.Retries {
					t.Fatalf("seed %d: %s tried %d times, retries %d", seed, s.Device, n, s.Retries)
				}
			}
		}
		// A run never answered in time failed exactly at its timeout, and
		// the whole fence ended within its bound.
		var bound time.Duration
		for _, level := range topo.Levels {
			for _, s := range level {
				bound += time.Duration(1+s.Retries) * (2*s.Timeout + topo.RetryDelay)
			}
		}
		for _, h := range m.History() {
			var timeout time.Duration
			for _, s := range topo.Levels[h.Level-1] {
				if s.Device == h.Device {
					timeout = s.Timeout
				}
			}
			if h.Duration > timeout {
				t.Fatalf("seed %d: %s %s lasted %v past its timeout %v", seed, h.Device, h.Action, h.Duration, timeout)
			}
		}
		if last := m.History(); len(last) > 0 {
			end := last[len(last)-1]
			if end.Started.Add(end.Duration).Sub(t0) > bound {
				t.Fatalf("seed %d: fence took %v, bound %v", seed, end.Started.Add(end.Duration).Sub(t0), bound)
			}
		}
	}
}

func TestTopologyExamples(t *testing.T) {
	two := Topology{Node: "n2", Levels: [][]Step{
		{{Device: "ipmi", Timeout: time.Second, Retries: 1}},
		{{Device: "pdu1", Timeout: time.Second}, {Device: "pdu2", Method: RebootOnly, Timeout: time.Second}},
	}}
	m := NewMachine(two)
	run := m.Start(t0)
	if run.Device != "ipmi" || run.Action != Off {
		t.Fatalf("first run %+v", run)
	}
	// off ok, status says on: a lie; retry at once (no delay).
	run = m.Step(t0, Result{ID: run.ID})
	run = m.Step(t0, Result{ID: run.ID, Power: PowerOn})
	if run.Device != "ipmi" || run.Attempt != 2 {
		t.Fatalf("retry %+v", run)
	}
	// second attempt hangs: a failure at its deadline, then level 2.
	if m.Tick(t0.Add(999*time.Millisecond)) != nil {
		t.Fatal("tick before the deadline acted")
	}
	run = m.Tick(t0.Add(time.Second))
	if run.Level != 2 || run.Device != "pdu1" {
		t.Fatalf("after the hang %+v", run)
	}
	now := t0.Add(time.Second)
	run = m.Step(now, Result{ID: run.ID})
	run = m.Step(now, Result{ID: run.ID, Power: PowerOff})
	if run.Device != "pdu2" || run.Action != Reboot {
		t.Fatalf("pdu2 %+v", run)
	}
	if m.Step(now, Result{ID: run.ID}) != nil {
		t.Fatal("run after the last device")
	}
	out, done := m.Done()
	if !done || !out.Confirmed || out.Level != 2 {
		t.Fatalf("outcome %+v", out)
	}
	if empty := NewMachine(Topology{Node: "x"}); empty.Start(t0) != nil {
		t.Fatal("empty topology ran")
	} else if out, _ := empty.Done(); out.Confirmed {
		t.Fatal("empty topology confirmed")
	}
}
