package report

import (
	"fmt"
	"math/rand/v2"
	"time"

	"tandem/internal/events"
)

// Synthetic yields a busy pair's audit log over [from, to): n events,
// in time order, as db1, db2 and the witness w would write them into one
// log: heartbeat links flapping, dropped packets, resources restarted in
// place, a nightly RAID check, weekly drills with their switchovers, and a
// failover every few days. Deterministic for a seed; for tests and for the
// report's benchmark (tandem bench report).
func Synthetic(seed uint64, n int, from, to time.Time, yield func(events.Event) bool) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	span := to.Sub(from)
	if n <= 0 || span <= 0 {
		return
	}
	step := span / time.Duration(n)
	nodes := []string{"db1", "db2"}
	holder, epoch := 0, uint64(1)
	count := 0
	emit := func(e events.Event) bool {
		if count >= n {
			return false
		}
		slot := from.Add(time.Duration(count) * step)
		if e.Time.Before(slot) { // an event given its own time keeps it, within its slot
			e.Time = slot
		}
		count++
		return yield(e)
	}
	day := -1
	for count < n {
		t := from.Add(time.Duration(count) * step)
		d := int(t.Sub(from) / (24 * time.Hour))
		obs := nodes[rng.IntN(2)]
		peer := nodes[1-indexOf(nodes, obs)]
		var ok bool
		switch r := rng.IntN(1000); {
		case d != day:
			// Once a day: the RAID check, and on Mondays a drill.
			day = d
			ok = emit(events.Event{Kind: events.RaidRebuildStarted, Node: obs, Subject: "md0", Message: "check started on md0", Attrs: map[string]any{"action": "check"}}) &&
				emit(events.Event{Kind: events.RaidRebuildFinished, Node: obs, Subject: "md0", Message: "check of md0 finished"})
			if d%7 == 0 {
				ok = ok && synthDrill(emit, nodes[holder], nodes[1-holder], &epoch)
			}
		case r < 450:
			// A flap of up to a few seconds.
			link := fmt.Sprintf("%s/%d", peer, rng.IntN(2))
			ok = emit(events.Event{Kind: events.LinkDown, Node: obs, Subject: link}) &&
				emit(events.Event{Kind: events.LinkUp, Node: obs, Subject: link, Time: t.Add(time.Duration(200+rng.IntN(3000)) * time.Millisecond)})
		case r < 750:
			ok = emit(events.Event{Kind: events.PacketDropped, Node: obs, Subject: peer, Message: "replayed datagram", Attrs: map[string]any{"reason": "replay", "count": float64(rng.IntN(20) + 1)}})
		case r < 950:
			ok = emit(events.Event{Kind: events.ResRestart, Node: nodes[holder], Subject: "service", Group: "shop-db", Epoch: epoch, Message: "monitor failed: connection refused"})
		case r < 998:
			ok = emit(events.Event{Kind: events.GuardDrops, Node: nodes[holder], Subject: "shop-db", Group: "shop-db", Epoch: epoch, Message: "the kernel guard dropped 3 packets for 10.0.0.50"})
		default:
			// The active node dies; the other takes over.
			from, to := nodes[holder], nodes[1-holder]
			epoch++
			holder = 1 - holder
			ok = emit(events.Event{Kind: events.NodeDown, Node: to, Subject: from}) &&
				emit(events.Event{Kind: events.Takeover, Node: to, Subject: "shop-db", Group: "shop-db", Epoch: epoch, Message: "took over from " + from,
					Attrs: map[string]any{"from": from, "detect_ms": float64(170 + rng.IntN(30)), "decide_ms": float64(1 + rng.IntN(5)), "start_ms": float64(10 + rng.IntN(20)), "total_ms": float64(200)}}) &&
				emit(events.Event{Kind: events.NodeUp, Node: to, Subject: from})
		}
		if !ok {
			return
		}
	}
}

// synthDrill is a planned drill's events: handover there, start, the
// record, handover back.
func synthDrill(emit func(events.Event) bool, a, b string, epoch *uint64) bool {
	e0 := *epoch
	*epoch += 2
	return emit(events.Event{Kind: events.Handover, Node: a, Subject: "shop-db", Group: "shop-db", Epoch: e0, Attrs: map[string]any{"to": b}}) &&
		emit(events.Event{Kind: events.GroupStarted, Node: b, Subject: "shop-db", Group: "shop-db", Epoch: e0 + 1, Attrs: map[string]any{"start_ms": float64(12), "lease_wait_ms": float64(0)}}) &&
		emit(events.Event{Kind: events.Handover, Node: b, Subject: "shop-db", Group: "shop-db", Epoch: e0 + 1, Attrs: map[string]any{"to": a}}) &&
		emit(events.Event{Kind: events.GroupStarted, Node: a, Subject: "shop-db", Group: "shop-db", Epoch: e0 + 2, Attrs: map[string]any{"start_ms": float64(11), "lease_wait_ms": float64(0)}}) &&
		emit(events.Event{Kind: events.Drill, Node: a, Subject: "shop-db", Group: "shop-db", Message: "planned drill passed",
			Attrs: map[string]any{"result": "pass", "kind": "planned", "switch_ms": float64(60), "verify_ms": float64(2), "switch_back_ms": float64(58)}})
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}
