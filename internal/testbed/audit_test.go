package testbed

import (
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/probe"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ev(ms int, k events.Kind, epoch uint64) events.Event {
	return events.Event{Time: at(ms), Kind: k, Group: "web", Epoch: epoch}
}

// cleanFailover: node1 runs epoch 1, is killed at 1000; node2 acquires
// epoch 2 at 1160 and runs it.
func cleanFailover() AuditInput {
	return AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1)},
			"node2": {ev(1160, events.LeaseAcquired, 2), ev(1180, events.GroupStarted, 2)},
			"witness": {
				{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				{Time: at(1155), Kind: events.Placement, Group: "web", Epoch: 2},
			},
		},
		Faults: []Fault{{At: at(1000), Kind: FaultKill, Host: "node1"}},
		Lease:  150 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
}

func TestCleanFailoverPassesTheAudit(t *testing.T) {
	in := cleanFailover()
	in.Answers = map[string]probe.Timeline{"web": {Samples: []probe.Sample{
		{Sent: at(500), Done: at(501), Node: "node1"},
		{Sent: at(1200), Done: at(1201), Node: "node2"},
	}}}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	spans := LeaseSpans(in)
	if len(spans) != 2 || !spans[0].To.Equal(at(1000)) || spans[1].Ended != "end of run" {
		t.Fatalf("%v", spans)
	}
}

func TestOverlappingHoldersAreReported(t *testing.T) {
	in := cleanFailover()
	in.Faults = nil // node1 was never incapacitated: it still held its lease
	p := CheckAudit(in)
	if len(p) != 1 || !strings.Contains(p[0], "two lease holders at once") {
		t.Fatal(p)
	}
}

func TestCutOffHolderKeepsItsLeaseOneLeaseLonger(t *testing.T) {
	in := cleanFailover()
	in.Faults = []Fault{{At: at(1050), Kind: FaultCutOff, Host: "node1"}}
	// 1050 + 150 > 1160: node2 acquired while node1 may still have held.
	if p := CheckAudit(in); len(p) != 1 {
		t.Fatal(p)
	}
	// node1 logged its loss in time: fine.
	in.Logs["node1"] = append(in.Logs["node1"], ev(1150, events.LeaseLost, 1), ev(1151, events.GroupStopped, 1))
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
}

func TestEpochsMustGrow(t *testing.T) {
	in := cleanFailover()
	in.Logs["node2"] = []events.Event{ev(1160, events.LeaseAcquired, 1), ev(1180, events.GroupStarted, 1)}
	in.Logs["witness"] = append(in.Logs["witness"], events.Event{Time: at(2000), Kind: events.Placement, Group: "web", Epoch: 1})
	p := strings.Join(CheckAudit(in), "\n")
	for _, want := range []string{"started on node2 at epoch 1 after node1 started it at epoch 1", "placement at epoch 1 after epoch 2"} {
		if !strings.Contains(p, want) {
			t.Errorf("missing %q in:\n%s", want, p)
		}
	}
}

func TestAnswerOutsideTheLeaseIsReported(t *testing.T) {
	in := cleanFailover()
	in.Answers = map[string]probe.Timeline{"web": {Samples: []probe.Sample{{Sent: at(1100), Done: at(1101), Node: "node1"}}}}
	p := CheckAudit(in)
	if len(p) != 1 || !strings.Contains(p[0], "node1 answered a probe sent at") {
		t.Fatal(p)
	}
}

func TestIncapacities(t *testing.T) {
	log := []Fault{
		{At: at(10), Kind: FaultKill, Host: "node1"},
		{At: at(20), Kind: FaultFreeze, Host: "node2"},
		{At: at(30), Kind: FaultStart, Host: "node1"},
		{At: at(40), Kind: FaultCutOff, Host: "witness"},
		{At: at(50), Kind: FaultThaw, Host: "node2"},
		{At: at(60), Kind: FaultHeal},
		{At: at(70), Kind: FaultIsolate, Host: "node1"},
	}
	got := Incapacities(log)
	want := []Incapacity{
		{Host: "node1", From: at(10), To: at(30), Why: FaultKill},
		{Host: "node2", From: at(20), To: at(50), Why: FaultFreeze},
		{Host: "witness", From: at(40), To: at(60), Why: FaultCutOff},
		{Host: "node1", From: at(70), Why: FaultIsolate},
	}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestShortCutOrFreezeCostsNothing(t *testing.T) {
	for _, k := range []FaultKind{FaultCutOff, FaultFreeze} {
		in := cleanFailover()
		in.Logs["node2"] = nil // no takeover: node1 kept running
		in.Faults = []Fault{{At: at(500), Kind: k, Host: "node1"}, {At: at(550), Kind: map[FaultKind]FaultKind{FaultCutOff: FaultHeal, FaultFreeze: FaultThaw}[k], Host: "node1"}}
		in.Answers = map[string]probe.Timeline{"web": {Samples: []probe.Sample{{Sent: at(900), Done: at(901), Node: "node1"}}}}
		if p := CheckAudit(in); len(p) != 0 {
			t.Errorf("%s for 50 ms: %v", k, p)
		}
	}
}

func TestQuickLegitimateMovesAreExplained(t *testing.T) {
	in := cleanFailover()
	spans := LeaseSpans(in)
	// node1 answered between node2's answers at 1300–1310 without a lease:
	// not explained; node2 answering at 1200 inside its span: explained.
	stale := probe.Conflict{Kind: probe.FlipBack, Node: "node1", From: at(1300), To: at(1310)}
	if Explained(stale, spans, "web", 5*time.Millisecond) {
		t.Error("node1 held no lease at 1300")
	}
	quick := probe.Conflict{Kind: probe.FlipBack, Node: "node2", From: at(1200), To: at(1210)}
	if !Explained(quick, spans, "web", 5*time.Millisecond) {
		t.Error("node2 held the lease at 1200")
	}
	if Explained(probe.Conflict{Kind: probe.TwoMACs, Node: "node2", From: at(1200), To: at(1210)}, spans, "web", 0) {
		t.Error("two MACs is never explained")
	}
}

func nodeDown(ms int, subject string, heardMs int) events.Event {
	return events.Event{Time: at(ms), Kind: events.NodeDown, Subject: subject,
		Attrs: map[string]any{"last_heard": at(heardMs).Format(time.RFC3339Nano)}}
}

// TestShortFreezeThatOutlivedTheLease: node1 sent its last heartbeat at 991
// and was frozen at 1038 for 151 ms, less than the 180 ms lease; but the
// voters last heard it at 991, so its lease ended by 1171 while frozen, and
// node2's lease from 1178 does not overlap it although node1 logged the
// loss only after the thaw (seed 30022 of the random suite).
func TestShortFreezeThatOutlivedTheLease(t *testing.T) {
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1), ev(1191, events.LeaseLost, 1)},
			"node2": {nodeDown(1171, "node1", 991), ev(1178, events.LeaseAcquired, 2), ev(1185, events.GroupStarted, 2)},
			"witness": {nodeDown(1171, "node1", 991),
				{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				{Time: at(1173), Kind: events.Placement, Group: "web", Epoch: 2}},
		},
		Faults: []Fault{{At: at(1038), Kind: FaultFreeze, Host: "node1"}, {At: at(1189), Kind: FaultThaw, Host: "node1"}},
		Lease:  180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	// A later episode (node1 killed at 1620) does not stand in for this one.
	for _, v := range []string{"node2", "witness"} {
		in.Logs[v] = append(in.Logs[v], nodeDown(1800, "node1", 1620))
	}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	// Had a voter heard node1 until 1030, its lease could have run to 1210,
	// past node2's start: that is reported.
	in.Logs["witness"][0] = nodeDown(1210, "node1", 1030)
	if p := CheckAudit(in); len(p) != 1 || !strings.Contains(p[0], "two lease holders at once") {
		t.Fatal(p)
	}
}

// TestShortFreezeThawedWithinTheLease: node1 was last heard at 1000,
// frozen at 1039 and thawed at 1156, 24 ms before its lease ran out at
// 1180 (last heard + lease); nobody heard it again before then, so its
// lease ended at 1180 although it logged the loss at 1238, and node2's
// lease from 1187 does not overlap it (storage seed 2015, beside
// stress-ng). Had node2 started at 1175, before 1180, that is reported.
func TestShortFreezeThawedWithinTheLease(t *testing.T) {
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1), ev(1238, events.LeaseLost, 1)},
			"node2": {nodeDown(1180, "node1", 1000), ev(1187, events.LeaseAcquired, 2), ev(1191, events.GroupStarted, 2),
				{Time: at(1242), Kind: events.NodeUp, Subject: "node1"}},
			"witness": {nodeDown(1180, "node1", 1000),
				{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				{Time: at(1183), Kind: events.Placement, Group: "web", Epoch: 2},
				{Time: at(1242), Kind: events.NodeUp, Subject: "node1"}},
		},
		Faults: []Fault{{At: at(1039), Kind: FaultFreeze, Host: "node1"}, {At: at(1156), Kind: FaultThaw, Host: "node1"}},
		Lease:  180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	spans := LeaseSpans(in)
	if !spans[0].To.Equal(at(1180)) {
		t.Fatalf("node1's span %+v, want it to end at 1180", spans[0])
	}
	in.Logs["node2"][1] = ev(1175, events.LeaseAcquired, 2)
	if p := CheckAudit(in); len(p) != 1 || !strings.Contains(p[0], "two lease holders at once") {
		t.Fatal(p)
	}
}

// TestNodeDownOfAnEarlierEpisodeIsIgnored: node2 was killed at 800 and
// restarted (the voters logged node_down, last heard 800), later took the
// group and was isolated at 1600. Bounding its new lease by the kill's
// node_down would end it before it began (seed 30019).
func TestNodeDownOfAnEarlierEpisodeIsIgnored(t *testing.T) {
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1), ev(1050, events.GroupStopped, 1)},
			"node2": {ev(1100, events.LeaseAcquired, 2), ev(1101, events.GroupStarted, 2)},
			"witness": {nodeDown(980, "node2", 800), nodeDown(1790, "node2", 1600),
				{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				{Time: at(1095), Kind: events.Placement, Group: "web", Epoch: 2}},
		},
		Faults: []Fault{
			{At: at(800), Kind: FaultKill, Host: "node2"}, {At: at(900), Kind: FaultStart, Host: "node2"},
			{At: at(1600), Kind: FaultIsolate, Host: "node2"},
		},
		Answers: map[string]probe.Timeline{"web": {Samples: []probe.Sample{{Sent: at(1110), Done: at(1111), Node: "node2"}}}},
		Lease:   180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	in.Logs["node1"] = append(in.Logs["node1"], nodeDown(980, "node2", 800), nodeDown(1790, "node2", 1600))
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
}

func nodeUp(ms int, subject string) events.Event {
	return events.Event{Time: at(ms), Kind: events.NodeUp, Subject: subject,
		Attrs: map[string]any{"last_heard": at(ms).Format(time.RFC3339Nano)}}
}

// TestNodeDownVoidedByANodeUpIsIgnored is seed 77103 of the random suite:
// a one-way partition node1→node2 (node2 logs node_down, last heard 1000)
// heals at 1700 (node2 logs node_up at 1710), and less than a second after
// that node_down node1 is cut off (complete at 2120). The witness's drop
// lands first: it last heard node1 at 2044; node2 still heard node1 until
// 2110 and vouched for its lease, so node1's VIP may answer until about
// 2110 + lease. The partition's node_down, voided by the node_up, used to
// be taken as node2's report: the bound became 2044 + 180 = 2224 and
// node1's answer at 2231 a violation. (Kept run ttb20196b: node_down 18 ms
// inside the old one-second window, witness 28.515, node2 really 28.575,
// "answered a probe sent at 28.702 outside … –28.695".)
func TestNodeDownVoidedByANodeUpIsIgnored(t *testing.T) {
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1)},
			"node2": {nodeDown(1180, "node1", 1000), nodeUp(1710, "node1"), nodeDown(2290, "node1", 2110),
				ev(2300, events.LeaseAcquired, 2), ev(2340, events.GroupStarted, 2)},
			"witness": {nodeDown(2224, "node1", 2044),
				{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				{Time: at(2295), Kind: events.Placement, Group: "web", Epoch: 2}},
		},
		Faults: []Fault{
			{At: at(1000), Kind: FaultOneWay, Host: "node1", Peer: "node2"}, {At: at(1700), Kind: FaultHeal},
			{At: at(2090), Done: at(2120), Kind: FaultCutOff, Host: "node1"}, {At: at(2900), Kind: FaultHeal},
		},
		Answers: map[string]probe.Timeline{"web": {Samples: []probe.Sample{
			{Sent: at(2231), Done: at(2232), Node: "node1"},
			{Sent: at(2350), Done: at(2351), Node: "node2"},
		}}},
		Lease: 180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	// node1 logged no lease_lost (its span ends by the cut's bound), so the
	// bound is node2's last-heard + lease = 2290, just before node2's lease.
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	spans := LeaseSpans(in)
	if len(spans) != 2 || !spans[0].To.Equal(at(2290)) {
		t.Fatalf("spans %v, want node1's to end at 2110 + lease", spans)
	}
	// An answer after that bound is still one.
	tl := in.Answers["web"]
	tl.Samples = append(tl.Samples, probe.Sample{Sent: at(2297), Done: at(2298), Node: "node1"})
	in.Answers["web"] = tl
	if p := CheckAudit(in); len(p) != 1 || !strings.Contains(p[0], "node1 answered a probe sent at") {
		t.Fatal(p)
	}
	// Without node2's node_up the partition's node_down stays in force: node2
	// did not hear node1 after 1000, and the bound is the witness's.
	in.Logs["node2"] = slices.Delete(in.Logs["node2"], 1, 3)
	if got := LeaseSpans(in); !got[0].To.Equal(at(2224)) {
		t.Fatalf("spans %v, want node1's to end at 2044 + lease", got)
	}
}

// cutWithHearing: node1 holds epoch 1 and is cut off, complete at 2120;
// node2 and the witness log what they heard; node2 takes over at 2400.
func cutWithHearing(node2, witness []events.Event) AuditInput {
	return AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1)},
			"node2": append(node2, ev(2400, events.LeaseAcquired, 2), ev(2420, events.GroupStarted, 2)),
			"witness": append(witness,
				events.Event{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1},
				events.Event{Time: at(2395), Kind: events.Placement, Group: "web", Epoch: 2}),
		},
		Faults: []Fault{{At: at(2000), Done: at(2120), Kind: FaultCutOff, Host: "node1"}, {At: at(2500), Kind: FaultHeal}},
		Lease:  180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
}

// TestHearingAgainAfterTheLeaseLapsedDoesNotStretchIt: the witness logged
// node_down before the cut was complete (its drop landed first) and both
// voters hear node1 again only after the heal, long after its lease
// lapsed: the bound is still the last hearing before the cut + lease.
func TestHearingAgainAfterTheLeaseLapsedDoesNotStretchIt(t *testing.T) {
	in := cutWithHearing(
		[]events.Event{nodeUp(50, "node1"), nodeDown(2180, "node1", 2000), nodeUp(2510, "node1")},
		[]events.Event{nodeUp(50, "node1"), nodeDown(2100, "node1", 1950), nodeUp(2520, "node1")})
	spans := LeaseSpans(in)
	if len(spans) != 2 || !spans[0].To.Equal(at(2180)) {
		t.Fatalf("spans %v, want node1's to end at 2000 + lease", spans)
	}
	if !strings.Contains(spans[0].Ended, "last heard by the voters at") {
		t.Errorf("span end %q does not say where the bound came from", spans[0].Ended)
	}
}

// TestHearingAgainWhileTheLeaseHoldsExtendsIt: a voter that hears node1
// again before its lease ran out may renew it, so its later hearing counts
// (the bound then falls back to the cut + lease, the tighter one).
func TestHearingAgainWhileTheLeaseHoldsExtendsIt(t *testing.T) {
	in := cutWithHearing(
		[]events.Event{nodeUp(50, "node1"), nodeDown(2180, "node1", 2000)},
		[]events.Event{nodeUp(50, "node1"), nodeDown(2100, "node1", 1950), nodeUp(2150, "node1"), nodeDown(2430, "node1", 2250)})
	if spans := LeaseSpans(in); !spans[0].To.Equal(at(2300)) {
		t.Fatalf("spans %v, want node1's to end at the cut + lease (2300): the witness heard it at 2250", spans)
	}
	// Still hearing it at the end of the logs: no bound from hearing.
	in = cutWithHearing(
		[]events.Event{nodeUp(50, "node1"), nodeDown(2180, "node1", 2000)},
		[]events.Event{nodeUp(50, "node1"), nodeDown(2100, "node1", 1950), nodeUp(2150, "node1")})
	if spans := LeaseSpans(in); !spans[0].To.Equal(at(2300)) {
		t.Fatalf("spans %v, want node1's to end at the cut + lease", spans)
	}
}

// TestHearingEndsAtTheVotersRestart: a killed voter logs no node_down; its
// restart ends what it heard before.
func TestHearingEndsAtTheVotersRestart(t *testing.T) {
	in := cutWithHearing(
		[]events.Event{nodeUp(50, "node1"), nodeDown(2180, "node1", 2000)},
		[]events.Event{nodeUp(50, "node1"), {Time: at(1900), Kind: events.NodeUp, Subject: "witness", Message: "agent started"}})
	if spans := LeaseSpans(in); !spans[0].To.Equal(at(2180)) {
		t.Fatalf("spans %v, want node1's to end at 2000 + lease", spans)
	}
}

// TestRegainedLeaseRunsWithoutGroupStarted (seeds 92004, 92006, 92007,
// 92009): a node loses its lease (lease_lost, group_stopped), regains it at
// the same epoch and converges back by starting its resources, logging no
// new group_started. Its VIP answering then is inside a lease span.
func TestRegainedLeaseRunsWithoutGroupStarted(t *testing.T) {
	res := func(ms int, k events.Kind, name string) events.Event {
		return events.Event{Time: at(ms), Kind: k, Group: "web", Subject: name, Epoch: 1}
	}
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {ev(100, events.LeaseAcquired, 1), ev(120, events.GroupStarted, 1),
				ev(1000, events.LeaseLost, 1), res(1001, events.ResStop, "vip"), ev(1005, events.GroupStopped, 1),
				ev(1500, events.LeaseAcquired, 1), res(1540, events.ResStart, "service"), res(1542, events.ResStart, "vip")},
			"witness": {{Time: at(90), Kind: events.Placement, Group: "web", Epoch: 1}},
		},
		Answers: map[string]probe.Timeline{"web": {Samples: []probe.Sample{
			{Sent: at(500), Done: at(501), Node: "node1"},
			{Sent: at(1600), Done: at(1601), Node: "node1"},
		}}},
		Lease: 180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	// Between the loss and the regained lease it must not answer.
	tl := in.Answers["web"]
	tl.Samples = append(tl.Samples, probe.Sample{Sent: at(1200), Done: at(1201), Node: "node1"})
	in.Answers["web"] = tl
	if p := CheckAudit(in); len(p) != 1 || !strings.Contains(p[0], "outside its lease spans") {
		t.Fatal(p)
	}
	// A lease regained but never used (nothing started) is no span.
	in.Logs["node1"] = in.Logs["node1"][:6]
	if spans := LeaseSpans(in); len(spans) != 1 {
		t.Fatalf("spans %v, want only the first", spans)
	}
}

// CI's TestRestartedAgentFindsItsService (2026-12-02): node1's agent sent
// its last heartbeat (and lease renewal) at 1025 and was SIGKILLed at 1073;
// the voters declared it down at 1205 (last heard 1025), its new agent
// spoke from 1207, and node2 acquired epoch 2 at 1232. node1's lease ended
// by 1205 (last heard + lease), not at kill + lease (1253): no overlap.
func TestKilledAgentsLeaseEndsALeaseAfterItWasLastHeard(t *testing.T) {
	down := func(ms, heard int) events.Event { return nodeDown(ms, "node1", heard) }
	in := AuditInput{
		Logs: map[string][]events.Event{
			"node1": {nodeUp(0, "witness"), ev(904, events.LeaseAcquired, 1), ev(945, events.GroupStarted, 1),
				{Time: at(1189), Kind: events.NodeUp, Subject: "node1"}, ev(1294, events.GroupStopped, 1)},
			"node2":   {nodeUp(0, "node1"), down(1205, 1025), nodeUp(1207, "node1"), ev(1232, events.LeaseAcquired, 2), ev(1275, events.GroupStarted, 2)},
			"witness": {nodeUp(0, "node1"), down(1205, 1025), nodeUp(1207, "node1")},
		},
		Faults: []Fault{{At: at(1073), Kind: FaultKillAgent, Host: "node1"}, {At: at(1085), Kind: FaultStart, Host: "node1"}},
		Lease:  180 * time.Millisecond, End: at(3000), Slack: 5 * time.Millisecond,
	}
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatal(p)
	}
	// Heard until the kill (a renewal just before it): the bound is kill + lease,
	// and a holder at 1232 overlaps.
	in.Logs["node2"][1], in.Logs["witness"][1] = down(1205, 1072), down(1205, 1072)
	if p := CheckAudit(in); len(p) != 1 || !strings.Contains(p[0], "two lease holders at once") {
		t.Fatalf("a renewal at 1072 holds the lease to 1252: %v", p)
	}
	// CI, 2026-12-03: the new agent logged node_up (1320) only after node2
	// had acquired epoch 2 (1232): the old incarnation's span still ends a
	// lease after it was last heard.
	in.Logs["node2"][1], in.Logs["witness"][1] = down(1205, 1025), down(1205, 1025)
	in.Logs["node1"][3].Time, in.Logs["node1"][4].Time = at(1320), at(1410)
	if p := CheckAudit(in); len(p) != 0 {
		t.Fatalf("a slow restart's node_up stretched the killed agent's lease: %v", p)
	}
}
