package report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report finishes the report: what is still open at the end of the
// period counts up to its end.
func (b *Builder) Report() Report {
	in := b.in
	r := Report{Cluster: in.Cluster, Period: in.PeriodName, From: in.From, To: in.To, Generated: in.Now, EventCount: b.inPeriod}
	r.Empty = b.inPeriod == 0
	open := &Section{ID: "open", Title: "Open problems", Status: Pass}
	r.Sections = []Section{
		b.clusterSection(open),
		b.linkSection(open),
		b.storageSection(open),
		b.movesSection(),
		b.drillSection(open),
		b.encryptionSection(),
		b.retentionSection(),
	}
	if len(open.Findings) == 0 {
		open.Summary = "nothing open at the end of the period"
	} else {
		open.Summary = plural(len(open.Findings), "problem open", "problems open") + " at " + stamp(b.end)
	}
	r.Sections = append(r.Sections, *open)
	r.Status = Pass
	for _, s := range r.Sections {
		r.Status = worse(r.Status, s.Status)
	}
	return r
}

// length is the period as far as it has happened.
func (b *Builder) length() time.Duration { return max(b.end.Sub(b.in.From), 0) }

func (b *Builder) clusterSection(open *Section) Section {
	s := Section{ID: "cluster", Title: "Cluster and nodes", Status: Pass}
	t := &Table{Columns: []string{"node", "role", "links", "outages", "down", "up-time"}}
	period := b.length()
	for _, m := range b.in.Nodes {
		spans := b.nodeOut[m.Name]
		for k, since := range b.nodeDown {
			if k.b == m.Name {
				spans = append(spans, span{since, b.end})
			}
		}
		merged := mergeSpans(spans)
		var down time.Duration
		outages := 0
		for _, sp := range merged {
			if d := b.clip(sp.from, sp.to); d > 0 {
				down += d
				outages++
			}
		}
		up := pct(period-down, period)
		if b.inPeriod == 0 {
			up = "no data"
		}
		t.Rows = append(t.Rows, []string{m.Name, m.Role, strconv.Itoa(m.Links), strconv.Itoa(outages), fmtDur(down), up})
		if period > 0 && float64(down) > 0.01*float64(period) {
			s.add(Attention, fmt.Sprintf("%s was down %s of the period (%s)", m.Name, fmtDur(down), pct(down, period)))
		}
		if b.downAtEnd(m.Name) {
			open.add(Fail, fmt.Sprintf("%s is down at the end of the period (as its peers last saw it)", m.Name))
			s.add(Attention, fmt.Sprintf("%s is down at the end of the period", m.Name))
		}
	}
	var lost time.Duration
	for _, d := range b.noQuorum {
		lost = max(lost, d)
	}
	for obs, since := range b.quorum {
		lost = max(lost, b.clip(since, b.end))
		open.add(Fail, fmt.Sprintf("%s has had no quorum since %s", obs, stamp(since)))
	}
	if lost > 0 {
		s.add(Attention, fmt.Sprintf("without quorum for up to %s (as one member saw it)", fmtDur(lost)))
	}
	s.Table = t
	data := 0
	for _, m := range b.in.Nodes {
		if m.Role == "node" {
			data++
		}
	}
	s.Summary = fmt.Sprintf("cluster %s: %d data nodes and %d witness; %s in the period, %s restarted in place, %s",
		b.in.Cluster, data, len(b.in.Nodes)-data, plural(b.resFailure, "resource failure", "resource failures"),
		plural(b.restarts, "resource", "resources"), plural(len(b.in.Groups), "group", "groups"))
	return s
}

// downAtEnd: the observers that last spoke of name saw it down.
func (b *Builder) downAtEnd(name string) bool {
	for k := range b.nodeDown {
		if k.b == name {
			return true
		}
	}
	return false
}

func mergeSpans(s []span) []span {
	sort.Slice(s, func(i, j int) bool { return s[i].from.Before(s[j].from) })
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && !x.from.After(out[n-1].to) {
			if x.to.After(out[n-1].to) {
				out[n-1].to = x.to
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

func (b *Builder) linkSection(open *Section) Section {
	s := Section{ID: "links", Title: "Heartbeat links: redundancy and up-time", Status: Pass}
	for _, m := range b.in.Nodes {
		if m.Role == "node" && m.Links < 2 {
			s.add(Fail, fmt.Sprintf("%s has %s: no redundant heartbeat path", m.Name, plural(m.Links, "link", "links")))
		}
	}
	period := b.length()
	t := &Table{Columns: []string{"seen by", "link", "outages", "down", "longest", "up-time"}}
	for _, k := range sortedKeys(b.links) {
		l := b.links[k]
		down, longest := l.down, l.longest
		if !l.downSince.IsZero() {
			d := b.clip(l.downSince, b.end)
			down += d
			longest = max(longest, d)
			open.add(Attention, fmt.Sprintf("link %s is down as %s sees it, since %s", k.b, k.a, stamp(l.downSince)))
		}
		t.Rows = append(t.Rows, []string{k.a, k.b, strconv.Itoa(l.downs), fmtDur(down), fmtDur(longest), pct(period-down, period)})
		if period > 0 && float64(down) > 0.001*float64(period) {
			s.add(Attention, fmt.Sprintf("link %s (seen by %s) was down %s: up-time %s, under 99.9 %%", k.b, k.a, fmtDur(down), pct(period-down, period)))
		}
	}
	s.Table = cut(t)
	if len(b.links) == 0 {
		s.Summary = "no link went down in the logs read (every link up throughout, or no data)"
	} else {
		s.Summary = fmt.Sprintf("%s went down at least once in or before the period", plural(len(b.links), "link", "links"))
	}
	if s.Status == Pass && len(b.in.Nodes) > 0 {
		s.Summary += "; every data node has redundant links"
	}
	return s
}

func (b *Builder) storageSection(open *Section) Section {
	s := Section{ID: "storage", Title: "RAID and replication", Status: Pass}
	for _, k := range sortedKeys(b.raid) {
		st := b.raid[k]
		if st.degraded {
			open.add(Fail, fmt.Sprintf("array %s on %s is degraded since %s%s", k.b, k.a, stamp(st.since), map[bool]string{true: " (rebuilding)"}[st.rebuilding]))
			s.add(Fail, fmt.Sprintf("array %s on %s is degraded at the end of the period", k.b, k.a))
		}
	}
	keys := make([]string, 0, len(b.replica))
	for k := range b.replica {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := b.replica[k].disk; d != "UpToDate" {
			open.add(Fail, fmt.Sprintf("replica %s is %s at the end of the period", k, d))
			s.add(Fail, fmt.Sprintf("replica %s is %s: the standby is not in sync", k, d))
		}
	}
	// The table lists the incidents (and a replica's return to UpToDate
	// after one); routine events are only counted.
	incidents := 0
	t := &Table{Columns: []string{"time", "node", "array or replica", "event", "detail"}}
	rows := append(append([]incident(nil), b.raidRows...), b.replRows...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })
	for _, x := range rows {
		if x.status != Pass {
			incidents++
		}
		t.Rows = append(t.Rows, []string{stamp(x.at), x.node, x.subject, x.kind, x.message})
	}
	if len(t.Rows) > 0 {
		s.Table = cut(t)
	}
	if incidents > 0 && s.Status == Pass {
		s.add(Attention, fmt.Sprintf("%s in the period, all resolved by its end", plural(incidents, "incident", "incidents")))
	}
	s.Summary = fmt.Sprintf("%s and %s in the period; %d arrays and %d replicas seen",
		plural(b.raidCount, "RAID event", "RAID events"), plural(b.replCount, "replica state change", "replica state changes"), len(b.raid), len(b.replica))
	if len(b.in.Volumes) > 0 {
		s.Summary += "; volumes: " + join(b.in.Volumes)
	}
	return s
}

func (b *Builder) movesSection() Section {
	s := Section{ID: "failovers", Title: "Switchovers and failovers", Status: Pass}
	// A planned switchover: the holder's handover, and the start of the
	// group on the target at the next epoch.
	for i := range b.handovers {
		h := &b.handovers[i]
		if ms, ok := b.started[groupEpoch{h.group, h.epoch + 1}]; ok {
			h.start, h.hasTimes = ms, true
			h.total = ms
		}
	}
	drills := b.drillWindows()
	moves := append(append([]move(nil), b.takeovers...), b.handovers...)
	for i := range moves {
		moves[i].drill = drills.covers(moves[i].group, moves[i].at)
	}
	sort.SliceStable(moves, func(i, j int) bool { return moves[i].at.Before(moves[j].at) })
	t := &Table{Columns: []string{"time", "group", "kind", "from", "to", "detect ms", "decide ms", "start ms", "total ms"}}
	var totals []int64
	unplanned := 0
	for _, m := range moves {
		kind := "failover"
		if m.planned {
			kind = "switchover"
		}
		if m.drill {
			kind += " (drill)"
		}
		row := []string{stamp(m.at), m.group, kind, m.from, m.to, "", "", "", ""}
		if m.hasTimes {
			if !m.planned {
				row[5], row[6] = strconv.FormatInt(m.detect, 10), strconv.FormatInt(m.decide, 10)
				totals = append(totals, m.total)
			}
			row[7], row[8] = strconv.FormatInt(m.start, 10), strconv.FormatInt(m.total, 10)
		}
		if !m.planned && !m.drill {
			unplanned++
		}
		t.Rows = append(t.Rows, row)
	}
	if len(t.Rows) > 0 {
		s.Table = cut(t)
	}
	s.Summary = fmt.Sprintf("%s and %s in the period", plural(len(b.handovers), "switchover", "switchovers"), plural(len(b.takeovers), "failover", "failovers"))
	if len(totals) > 0 {
		slices.Sort(totals)
		s.Summary += fmt.Sprintf("; failover time (detect + decide + start) median %d ms, p95 %d ms, max %d ms",
			totals[len(totals)/2], totals[int(math.Ceil(0.95*float64(len(totals))))-1], totals[len(totals)-1])
	}
	if unplanned > 0 {
		s.add(Attention, fmt.Sprintf("%s outside drills: each is an incident to explain", plural(unplanned, "failover", "failovers")))
	}
	return s
}

// drillSpan is the time a drill of a group took, ending at its record.
type drillSpans map[string][]span

func (d drillSpans) covers(group string, at time.Time) bool {
	for _, sp := range d[group] {
		if !at.Before(sp.from) && !at.After(sp.to) {
			return true
		}
	}
	return false
}

// drillWindows: a drill's record is written at its end and carries its
// total time, so the moves inside that window were the drill's.
func (b *Builder) drillWindows() drillSpans {
	out := drillSpans{}
	for _, d := range b.drills {
		if d.result == "refused" {
			continue
		}
		total := time.Duration(d.switchMs+d.verifyMs+d.switchBack) * time.Millisecond
		out[d.group] = append(out[d.group], span{d.at.Add(-total - 10*time.Minute), d.at})
	}
	return out
}

// requiredDrills is what the period needs: 4 a quarter, pro-rated for
// other periods (rounded up), at least 1.
func (b *Builder) requiredDrills() int {
	if b.in.Quarter {
		return RequiredDrillsPerQuarter
	}
	n := int(math.Ceil(float64(RequiredDrillsPerQuarter) * float64(b.in.To.Sub(b.in.From)) / float64(quarter)))
	return max(n, 1)
}

func (b *Builder) drillSection(open *Section) Section {
	s := Section{ID: "drills", Title: "Failover drills", Status: Pass}
	sort.SliceStable(b.drills, func(i, j int) bool { return b.drills[i].at.Before(b.drills[j].at) })
	t := &Table{Columns: []string{"time", "group", "kind", "result", "switch ms", "verify ms", "switch back ms", "recorded by"}}
	passed := 0
	var last time.Time
	for _, d := range b.drills {
		if d.result == "pass" {
			passed++
			last = d.at
		}
		ms := func(v int64) string {
			if v == 0 {
				return ""
			}
			return strconv.FormatInt(v, 10)
		}
		t.Rows = append(t.Rows, []string{stamp(d.at), d.group, d.kind, d.result, ms(d.switchMs), ms(d.verifyMs), ms(d.switchBack), d.node})
	}
	if len(t.Rows) > 0 {
		s.Table = cut(t)
	}
	need := b.requiredDrills()
	how := fmt.Sprintf("%d per quarter", RequiredDrillsPerQuarter)
	if !b.in.Quarter {
		how += fmt.Sprintf(", %d for this period", need)
	}
	s.Summary = fmt.Sprintf("%d of %s passed (required: %s)", passed, plural(len(b.drills), "drill", "drills"), how)
	inProgress := b.in.Now.Before(b.in.To)
	switch {
	case passed >= need:
	case inProgress:
		s.add(Attention, fmt.Sprintf("%d passed drill(s) so far, %d required by %s (the period is not over)", passed, need, stamp(b.in.To)))
	default:
		s.add(Fail, fmt.Sprintf("%d passed drill(s), %d required", passed, need))
	}
	for _, d := range b.drills {
		if d.result == "fail" {
			s.add(Attention, fmt.Sprintf("the drill of %s at %s failed: %s", d.group, stamp(d.at), d.message))
		}
	}
	// Four a quarter is one every ~23 days.
	due := quarter / RequiredDrillsPerQuarter
	if last.IsZero() || b.end.Sub(last) > due {
		since := "none in the period"
		if !last.IsZero() {
			since = "the last passed " + stamp(last)
		}
		open.add(Attention, fmt.Sprintf("a failover drill is overdue (%s; one every %d days keeps %d a quarter)", since, int(math.Round(due.Hours()/24)), RequiredDrillsPerQuarter))
	}
	return s
}

func (b *Builder) encryptionSection() Section {
	s := Section{ID: "encryption", Title: "Encryption of cluster traffic", Status: Pass}
	in := b.in
	if !in.Encrypted {
		s.add(Fail, "insecure: true — heartbeats, raft and replication travel in plaintext, unauthenticated")
		s.Summary = "cluster traffic is NOT encrypted"
		return s
	}
	s.Summary = "heartbeats (AES-256-GCM), raft and replication (TLS 1.3) are encrypted and authenticated with the cluster key " + in.KeyFile
	switch {
	case in.KeyErr != "":
		s.add(Attention, "the key's age is unknown: "+in.KeyErr)
	case in.KeyCreated.IsZero():
		s.add(Attention, "the key's age is unknown")
	default:
		age := in.Now.Sub(in.KeyCreated)
		s.Summary += fmt.Sprintf("; the key is %s old (%s: %s)", fmtDur(age), in.KeySource, stamp(in.KeyCreated))
		if age > MaxKeyAge {
			s.add(Attention, fmt.Sprintf("the cluster key is %s old: rotate it (older than %d days)", fmtDur(age), int(MaxKeyAge.Hours()/24)))
		}
	}
	if in.APIOverTCP {
		where := "on the node's first link address"
		if in.APIBindAll {
			where = "on every address"
		}
		s.add(Attention, "the control API also listens on TCP "+where+": plain HTTP with a bearer token, not encrypted (keep it on a management network, or use the unix socket)")
	}
	return s
}

func (b *Builder) retentionSection() Section {
	s := Section{ID: "retention", Title: "Audit-log retention and integrity", Status: Pass}
	in := b.in
	switch {
	case in.Retention == 0:
		s.Summary = "events.retention is 0: events are kept for ever"
	case in.Retention < RequiredRetention:
		s.add(Fail, fmt.Sprintf("events.retention is %s, under the required %d days", fmtDur(in.Retention), int(RequiredRetention.Hours()/24)))
		s.Summary = "events.retention is too short"
	default:
		s.Summary = fmt.Sprintf("events.retention keeps %s (required: %d days)", fmtDur(in.Retention), int(RequiredRetention.Hours()/24))
	}
	t := &Table{Columns: []string{"log", "entries", "oldest", "covers", "chain"}}
	for i, l := range in.Logs {
		oldest := b.oldest[i]
		covers := "-"
		if !oldest.IsZero() {
			covers = fmtDur(in.Now.Sub(oldest))
		}
		chain := "holds"
		if !l.ChainOK {
			chain = "BROKEN"
		}
		if l.ChainNote != "" {
			chain += ": " + l.ChainNote
		}
		t.Rows = append(t.Rows, []string{l.Path, strconv.Itoa(l.Entries), map[bool]string{true: "-", false: stamp(oldest)}[oldest.IsZero()], covers, chain})
		switch {
		case l.Err != "":
			s.add(Fail, fmt.Sprintf("%s could not be read: %s", l.Path, l.Err))
			continue
		case !l.ChainOK:
			s.add(Fail, fmt.Sprintf("%s: the hash chain is broken (%s): entries were changed, removed or inserted", l.Path, l.ChainNote))
		}
		if l.Unreadable > 0 {
			what := fmt.Sprintf("%d lines are not events", l.Unreadable)
			if l.Unreadable == 1 {
				what = "1 line is not an event"
			}
			s.add(Attention, fmt.Sprintf("%s: %s (torn by a crash, or not written by tandem)", l.Path, what))
		}
		switch {
		case oldest.IsZero():
			s.add(Attention, fmt.Sprintf("%s is empty", l.Path))
		case in.Now.Sub(oldest) >= RequiredRetention:
		case l.Compacted:
			s.add(Fail, fmt.Sprintf("%s reaches back only to %s, but entries were dropped: less than %d days are kept", l.Path, stamp(oldest), int(RequiredRetention.Hours()/24)))
		default:
			s.add(Pass, fmt.Sprintf("%s is complete since %s (the log is younger than %d days; nothing was dropped)", l.Path, stamp(oldest), int(RequiredRetention.Hours()/24)))
		}
	}
	if len(in.Logs) == 0 {
		s.add(Fail, "no audit log was read")
	}
	s.Table = t
	return s
}

// cut keeps a table to maxRows rows, counting the rest.
func cut(t *Table) *Table {
	if len(t.Rows) > maxRows {
		t.More += len(t.Rows) - maxRows
		t.Rows = t.Rows[:maxRows]
	}
	return t
}

// Title is the report's heading.
func (r Report) Title() string {
	return fmt.Sprintf("tandem audit report — cluster %s — %s", r.Cluster, strings.TrimSpace(r.Period))
}
