package report

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
)

var q4 = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// input is a healthy pair's facts for 2026Q4, reported after its end.
func input() Input {
	return Input{
		Cluster: "shop", From: q4, To: q4.AddDate(0, 3, 0), Now: q4.AddDate(0, 3, 1), PeriodName: "2026Q4", Quarter: true,
		Nodes:     []Member{{Name: "db1", Role: "node", Links: 2}, {Name: "db2", Role: "node", Links: 2}, {Name: "w", Role: "witness", Links: 1}},
		Groups:    []string{"shop-db"},
		Encrypted: true, KeyFile: "/etc/tandem/cluster.key", KeyCreated: q4.AddDate(0, -2, 0), KeySource: "file mtime",
		Retention: RequiredRetention,
		Logs:      []Log{{Path: "events.jsonl", Entries: 10, ChainOK: true}},
	}
}

func build(in Input, evs ...events.Event) Report {
	b := NewBuilder(in)
	for _, e := range evs {
		b.Add(0, e)
	}
	return b.Report()
}

func section(t *testing.T, r Report, id string) Section {
	t.Helper()
	for _, s := range r.Sections {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no section %s", id)
	return Section{}
}

func at(d time.Duration) time.Time { return q4.Add(d) }

func drillEv(d time.Duration, result string) events.Event {
	return events.Event{Time: at(d), Kind: events.Drill, Node: "db1", Subject: "shop-db", Group: "shop-db",
		Attrs: map[string]any{"result": result, "kind": "planned", "switch_ms": float64(60), "verify_ms": float64(2), "switch_back_ms": float64(55)}}
}

func findings(s Section) string {
	var out []string
	for _, f := range s.Findings {
		out = append(out, string(f.Status)+": "+f.Text)
	}
	return strings.Join(out, "\n")
}

// A period without a single event is a report that says so, with every
// section present, and renders: no crash, no empty page.
func TestEmptyPeriodIsAClearReport(t *testing.T) {
	in := input()
	in.Logs[0].Entries = 0
	r := build(in)
	if !r.Empty || r.EventCount != 0 || len(r.Sections) != 8 {
		t.Fatalf("empty report: %+v", r)
	}
	if s := section(t, r, "drills"); s.Status != Fail || !strings.Contains(s.Summary, "0 of 0 drills passed") {
		t.Errorf("drills of an empty quarter: %s %s", s.Status, s.Summary)
	}
	var html, js bytes.Buffer
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "No events in this period") {
		t.Error("the HTML does not say the period is empty")
	}
	if err := WriteJSON(&js, r); err != nil || !json.Valid(js.Bytes()) {
		t.Fatalf("JSON: %v", err)
	}
}

func TestDrillsAgainstTheQuarterlyRequirement(t *testing.T) {
	var four []events.Event
	for i := range 4 {
		four = append(four, drillEv(time.Duration(i)*20*24*time.Hour, "pass"))
	}
	four = append(four, drillEv(85*24*time.Hour, "pass"))
	if s := section(t, build(input(), four...), "drills"); s.Status != Pass || !strings.Contains(s.Summary, "5 of 5 drills passed") {
		t.Errorf("five passed drills: %s %s\n%s", s.Status, s.Summary, findings(s))
	}
	three := append(four[:3:3], drillEv(70*24*time.Hour, "fail"), drillEv(71*24*time.Hour, "refused"))
	s := section(t, build(input(), three...), "drills")
	if s.Status != Fail || !strings.Contains(findings(s), "3 passed drill(s), 4 required") || !strings.Contains(findings(s), "failed") {
		t.Errorf("three passed drills in a finished quarter: %s\n%s", s.Status, findings(s))
	}
	// The quarter is not over: short of the four is attention, not fail.
	in := input()
	in.Now = q4.AddDate(0, 1, 0)
	if s := section(t, build(in, three...), "drills"); s.Status != Attention {
		t.Errorf("a quarter in progress: %s\n%s", s.Status, findings(s))
	}
	// Another period: pro-rated, 180 days want 8.
	in = input()
	in.Quarter, in.From = false, in.To.Add(-RequiredRetention)
	if got := NewBuilder(in).requiredDrills(); got != 8 {
		t.Errorf("180 days require %d drills, want 8", got)
	}
}

func TestLinkUptimeAndRedundancy(t *testing.T) {
	evs := []events.Event{
		// Down before the period, up 1 h into it: 1 h counts.
		{Time: at(-2 * time.Hour), Kind: events.LinkDown, Node: "db1", Subject: "db2/1"},
		{Time: at(time.Hour), Kind: events.LinkUp, Node: "db1", Subject: "db2/1"},
		// 10 minutes in the middle.
		{Time: at(24 * time.Hour), Kind: events.LinkDown, Node: "db2", Subject: "db1/0"},
		{Time: at(24*time.Hour + 10*time.Minute), Kind: events.LinkUp, Node: "db2", Subject: "db1/0"},
		// Down at the end.
		{Time: at(80 * 24 * time.Hour), Kind: events.LinkDown, Node: "db2", Subject: "db1/1"},
	}
	r := build(input(), evs...)
	s := section(t, r, "links")
	rows := map[string][]string{}
	for _, row := range s.Table.Rows {
		rows[row[0]+" "+row[1]] = row
	}
	if got := rows["db1 db2/1"]; got[2] != "0" || got[3] != "1h0m0s" {
		t.Errorf("a link down since before the period: %v", got)
	}
	if got := rows["db2 db1/0"]; got[2] != "1" || got[3] != "10m0s" {
		t.Errorf("a 10-minute outage: %v", got)
	}
	if s.Status != Attention || !strings.Contains(findings(s), "link db1/1 (seen by db2) was down") {
		t.Errorf("a link down for 12 days: %s\n%s", s.Status, findings(s))
	}
	if o := section(t, r, "open"); !strings.Contains(findings(o), "link db1/1 is down as db2 sees it") {
		t.Errorf("open problems: %s", findings(o))
	}
	in := input()
	in.Nodes[1].Links = 1
	if s := section(t, build(in), "links"); s.Status != Fail || !strings.Contains(findings(s), "db2 has 1 link: no redundant heartbeat path") {
		t.Errorf("a single link: %s\n%s", s.Status, findings(s))
	}
}

// An agent that restarts closes what it saw open when it was last heard
// of: its own downtime is not its links'.
func TestObserverRestartClosesItsOutages(t *testing.T) {
	r := build(input(),
		events.Event{Time: at(time.Hour), Kind: events.LinkDown, Node: "db1", Subject: "db2/0"},
		events.Event{Time: at(time.Hour + time.Minute), Kind: events.PacketDropped, Node: "db1"},
		events.Event{Time: at(5 * time.Hour), Kind: events.NodeUp, Node: "db1", Subject: "db1", Message: "agent started"},
	)
	s := section(t, r, "links")
	if got := s.Table.Rows[0]; got[3] != "1m0s" {
		t.Errorf("link down until its observer was last heard: %v", got)
	}
}

func TestSwitchoversFailoversAndDrills(t *testing.T) {
	d := 10 * 24 * time.Hour
	evs := []events.Event{
		// A planned drill: handover there, start, handover back, start, record.
		{Time: at(d), Kind: events.Handover, Node: "db1", Subject: "shop-db", Group: "shop-db", Epoch: 4, Attrs: map[string]any{"to": "db2"}},
		{Time: at(d + 50*time.Millisecond), Kind: events.GroupStarted, Node: "db2", Subject: "shop-db", Group: "shop-db", Epoch: 5, Attrs: map[string]any{"start_ms": float64(12)}},
		{Time: at(d + time.Second), Kind: events.Handover, Node: "db2", Subject: "shop-db", Group: "shop-db", Epoch: 5, Attrs: map[string]any{"to": "db1"}},
		{Time: at(d + time.Second + 50*time.Millisecond), Kind: events.GroupStarted, Node: "db1", Subject: "shop-db", Group: "shop-db", Epoch: 6, Attrs: map[string]any{"start_ms": float64(11)}},
		drillEv(d+2*time.Second, "pass"),
		// A real failover two days later.
		{Time: at(12 * 24 * time.Hour), Kind: events.Takeover, Node: "db2", Subject: "shop-db", Group: "shop-db", Epoch: 7,
			Attrs: map[string]any{"from": "db1", "detect_ms": float64(181), "decide_ms": float64(2), "start_ms": float64(11), "total_ms": float64(194)}},
	}
	s := section(t, build(input(), evs...), "failovers")
	if len(s.Table.Rows) != 3 {
		t.Fatalf("rows %v", s.Table.Rows)
	}
	if got := s.Table.Rows[0]; got[2] != "switchover (drill)" || got[3] != "db1" || got[4] != "db2" || got[7] != "12" {
		t.Errorf("the drill's switchover: %v", got)
	}
	if got := s.Table.Rows[2]; got[2] != "failover" || got[5] != "181" || got[6] != "2" || got[7] != "11" || got[8] != "194" {
		t.Errorf("the failover: %v", got)
	}
	if s.Status != Attention || !strings.Contains(s.Summary, "median 194 ms") || !strings.Contains(findings(s), "1 failover outside drills") {
		t.Errorf("%s %s\n%s", s.Status, s.Summary, findings(s))
	}
}

func TestStorageIncidents(t *testing.T) {
	ev := func(d time.Duration, k events.Kind) events.Event {
		return events.Event{Time: at(d), Kind: k, Node: "db1", Subject: "md0", Message: string(k)}
	}
	healed := build(input(), ev(time.Hour, events.RaidFail), ev(time.Hour, events.RaidDegradedArray),
		ev(2*time.Hour, events.RaidRebuildStarted), ev(5*time.Hour, events.RaidRebuildFinished))
	if s := section(t, healed, "storage"); s.Status != Attention || !strings.Contains(findings(s), "all resolved") {
		t.Errorf("a healed array: %s\n%s", s.Status, findings(s))
	}
	broken := build(input(), ev(time.Hour, events.RaidDegradedArray))
	if s := section(t, broken, "storage"); s.Status != Fail {
		t.Errorf("an array degraded at the end: %s", s.Status)
	}
	if o := section(t, broken, "open"); o.Status != Fail || !strings.Contains(findings(o), "array md0 on db1 is degraded") {
		t.Errorf("open: %s", findings(o))
	}
}

func TestEncryptionAndKeyAge(t *testing.T) {
	in := input()
	in.Encrypted = false
	if s := section(t, build(in), "encryption"); s.Status != Fail {
		t.Errorf("insecure: %s", s.Status)
	}
	in = input()
	in.KeyCreated = in.Now.Add(-400 * 24 * time.Hour)
	if s := section(t, build(in), "encryption"); s.Status != Attention || !strings.Contains(findings(s), "rotate it") {
		t.Errorf("an old key: %s %s", s.Status, findings(s))
	}
	in = input()
	in.APIOverTCP = true
	if s := section(t, build(in), "encryption"); s.Status != Attention || !strings.Contains(findings(s), "plain HTTP") {
		t.Errorf("the TCP API: %s", findings(s))
	}
}

func TestRetention(t *testing.T) {
	old := events.Event{Time: q4.AddDate(0, 0, -200), Kind: events.NodeUp, Node: "db1", Subject: "db1"}
	young := events.Event{Time: q4.AddDate(0, 0, -10), Kind: events.NodeUp, Node: "db1", Subject: "db1"}
	if s := section(t, build(input(), old), "retention"); s.Status != Pass {
		t.Errorf("200 days kept: %s\n%s", s.Status, findings(s))
	}
	if s := section(t, build(input(), young), "retention"); s.Status != Pass || !strings.Contains(findings(s), "complete since") {
		t.Errorf("a young log, nothing dropped: %s\n%s", s.Status, findings(s))
	}
	in := input()
	in.Logs[0].Compacted = true
	if s := section(t, build(in, young), "retention"); s.Status != Fail {
		t.Errorf("a compacted log keeping 100 days: %s", s.Status)
	}
	in = input()
	in.Retention = 30 * 24 * time.Hour
	if s := section(t, build(in, old), "retention"); s.Status != Fail {
		t.Errorf("retention 30d: %s", s.Status)
	}
	in = input()
	in.Logs[0].ChainOK, in.Logs[0].ChainNote = false, "line 5"
	if s := section(t, build(in, old), "retention"); s.Status != Fail || !strings.Contains(findings(s), "hash chain is broken") {
		t.Errorf("a broken chain: %s", findings(s))
	}
}

// A busy synthetic half year: every section computed, the HTML
// self-contained (no script, no external asset).
func TestSyntheticHalfYear(t *testing.T) {
	in := input()
	in.To = in.Now
	in.From, in.Quarter, in.PeriodName = in.Now.Add(-RequiredRetention), false, "180 days"
	b := NewBuilder(in)
	n := 0
	Synthetic(1, 100000, in.From, in.To, func(e events.Event) bool { b.Add(0, e); n++; return true })
	// A restless quarter: more failovers than a table shows.
	for i := range 250 {
		b.Add(0, events.Event{Time: in.Now.Add(-time.Duration(i+1) * time.Hour), Kind: events.Takeover, Node: "db2", Subject: "shop-db", Group: "shop-db"})
		n++
	}
	r := b.Report()
	if r.EventCount != n || n != 100250 {
		t.Fatalf("%d events in the period of %d fed", r.EventCount, n)
	}
	if s := section(t, r, "drills"); s.Status != Pass || !strings.Contains(s.Summary, "26 of 26 drills passed") {
		t.Errorf("weekly drills: %s %s", s.Status, s.Summary)
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`(?i)<script|<link|src=|url\(|@import|href="http`).Match(html.Bytes()) {
		t.Error("the HTML refers to something outside itself")
	}
	if !strings.Contains(html.String(), "more rows") {
		t.Error("a busy period's long tables are not cut")
	}
}

func TestParsePeriods(t *testing.T) {
	from, to, err := ParseQuarter("2026Q4")
	if err != nil || !from.Equal(q4) || !to.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("2026Q4: %v %v %v", from, to, err)
	}
	for _, bad := range []string{"2026Q5", "26Q1", "2026", "Q4 2026", "2026Q4x"} {
		if _, _, err := ParseQuarter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	now := q4
	if got, err := ParseSince("180d", now); err != nil || !got.Equal(now.Add(-RequiredRetention)) {
		t.Errorf("180d: %v %v", got, err)
	}
	if got, err := ParseSince("2026-06-01", now); err != nil || got.Month() != 6 {
		t.Errorf("a date: %v %v", got, err)
	}
	if _, err := ParseSince("yesterday", now); err == nil {
		t.Error("yesterday accepted")
	}
}

// Replication: an Outdated replica is an incident, its return to UpToDate
// the recovery; the same change in two voters' logs counts once; one left
// Outdated is open at the end.
func TestReplicaIncidents(t *testing.T) {
	ev := func(d time.Duration, node, disk, prev string) events.Event {
		return events.Event{Time: at(d), Kind: events.ReplicaState, Node: node, Subject: "pg/db2",
			Attrs: map[string]any{"disk": disk, "previous": prev, "volume": "pg", "replica": "db2"}}
	}
	b := NewBuilder(input())
	b.in.Logs = append(b.in.Logs, Log{Path: "w.jsonl", ChainOK: true})
	b.oldest = append(b.oldest, time.Time{})
	for log, node := range []string{"db1", "w"} {
		b.Add(log, ev(time.Hour, node, "Outdated", "UpToDate"))
		b.Add(log, ev(2*time.Hour, node, "UpToDate", "Outdated"))
	}
	s := section(t, b.Report(), "storage")
	if s.Status != Attention || s.Table == nil || len(s.Table.Rows) != 2 || !strings.Contains(s.Summary, "2 replica state changes") {
		t.Fatalf("an Outdated replica that came back: %s %s %+v", s.Status, s.Summary, s.Table)
	}
	r := build(input(), ev(time.Hour, "db1", "Outdated", "UpToDate"))
	if s := section(t, r, "storage"); s.Status != Fail {
		t.Errorf("left Outdated: %s", s.Status)
	}
	if o := section(t, r, "open"); !strings.Contains(findings(o), "replica pg/db2 is Outdated") {
		t.Errorf("open: %s", findings(o))
	}
}
