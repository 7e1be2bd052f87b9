package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"tandem/internal/events"
)

// Builder folds audit-log events into a Report. Feed it every event of
// each log in the log's order (Add), events before the period too: they
// set the state the period starts in. Logs may come one after another:
// what depends on order is kept per writing node.
type Builder struct {
	in  Input
	end time.Time // the period's end as far as it has happened: min(To, Now)

	inPeriod int
	// nodes: down intervals of each voter as each observer saw them.
	nodeDown map[pair]time.Time
	nodeOut  map[string][]span
	// links, by observer and link ("db2/0").
	links map[pair]*linkStat
	// lastSeen is each writer's last event: an agent that restarts closes
	// what it had open at that moment, not at its restart.
	lastSeen map[string]time.Time
	quorum   map[string]time.Time // observer → lost since
	noQuorum map[string]time.Duration

	raid       map[pair]*raidStat // (node, array)
	raidRows   []incident
	raidCount  int
	replica    map[string]replicaRec // "volume/node" → disk, as last recorded
	replSeen   map[string]bool
	replRows   []incident
	replCount  int
	takeovers  []move
	handovers  []move
	started    map[groupEpoch]int64 // start_ms of a group_started at (group, epoch)
	drills     []drillRow
	drillSeen  map[string]bool
	oldest     []time.Time // per log: its first entry (a checkpoint's time: the last dropped entry)
	restarts   int
	resFailure int
}

type pair struct{ a, b string }

type groupEpoch struct {
	group string
	epoch uint64
}

type span struct{ from, to time.Time }

type replicaRec struct {
	disk string
	at   time.Time
}

type linkStat struct {
	downSince time.Time // zero: up (or unknown)
	down      time.Duration
	downs     int
	longest   time.Duration
	openAtEnd bool
}

type raidStat struct {
	degraded   bool
	since      time.Time
	rebuilding bool
}

type incident struct {
	at            time.Time
	node, subject string
	kind, message string
	status        Status
}

type move struct {
	at                time.Time
	group, from, to   string
	epoch             uint64
	detect, decide    int64
	start, total      int64
	hasTimes, planned bool
	drill             bool
}

type drillRow struct {
	at                             time.Time
	node, group, result, kind      string
	switchMs, verifyMs, switchBack int64
	message                        string
}

// NewBuilder starts a report for in.
func NewBuilder(in Input) *Builder {
	end := in.To
	if in.Now.Before(end) {
		end = in.Now
	}
	if end.Before(in.From) {
		end = in.From
	}
	return &Builder{in: in, end: end,
		nodeDown: map[pair]time.Time{}, nodeOut: map[string][]span{}, links: map[pair]*linkStat{},
		lastSeen: map[string]time.Time{}, quorum: map[string]time.Time{}, noQuorum: map[string]time.Duration{},
		raid: map[pair]*raidStat{}, replica: map[string]replicaRec{}, replSeen: map[string]bool{}, started: map[groupEpoch]int64{},
		drillSeen: map[string]bool{}, oldest: make([]time.Time, len(in.Logs))}
}

// clip is the part of [from, to) inside the period.
func (b *Builder) clip(from, to time.Time) time.Duration {
	if from.Before(b.in.From) {
		from = b.in.From
	}
	if to.After(b.end) {
		to = b.end
	}
	if !to.After(from) {
		return 0
	}
	return to.Sub(from)
}

func (b *Builder) within(t time.Time) bool { return !t.Before(b.in.From) && t.Before(b.end) }

// Add feeds one event of log number log (an index into Input.Logs).
func (b *Builder) Add(log int, e events.Event) {
	if log >= 0 && log < len(b.oldest) && (b.oldest[log].IsZero() || e.Time.Before(b.oldest[log])) {
		b.oldest[log] = e.Time
	}
	if !e.Time.Before(b.end) {
		return // after the period: it cannot change what the period was
	}
	in := b.within(e.Time)
	if in {
		b.inPeriod++
	}
	obs := e.Node
	switch e.Kind {
	case events.NodeUp:
		if e.Subject == obs { // this agent started: what it saw before ended when it was last heard of
			b.closeObserver(obs)
		}
		b.nodeUp(obs, e.Subject, e.Time)
	case events.NodeDown:
		if e.Subject == obs {
			b.closeObserver(obs)
		} else if _, down := b.nodeDown[pair{obs, e.Subject}]; !down {
			b.nodeDown[pair{obs, e.Subject}] = e.Time
		}
	case events.LinkDown:
		l := b.link(obs, e.Subject)
		if l.downSince.IsZero() {
			l.downSince = e.Time
			if in {
				l.downs++
			}
		}
	case events.LinkUp:
		b.linkUp(b.link(obs, e.Subject), e.Time)
	case events.QuorumLost:
		if _, lost := b.quorum[obs]; !lost {
			b.quorum[obs] = e.Time
		}
	case events.QuorumGained:
		if t, lost := b.quorum[obs]; lost {
			b.noQuorum[obs] += b.clip(t, e.Time)
			delete(b.quorum, obs)
		}
	case events.Takeover:
		if in {
			m := move{at: e.Time, group: groupOf(e), to: obs, epoch: e.Epoch, from: str(e.Attrs["from"])}
			m.detect, m.hasTimes = num(e.Attrs["detect_ms"])
			m.decide, _ = num(e.Attrs["decide_ms"])
			m.start, _ = num(e.Attrs["start_ms"])
			m.total, _ = num(e.Attrs["total_ms"])
			if m.total == 0 {
				m.total = m.detect + m.decide + m.start
			}
			b.takeovers = append(b.takeovers, m)
		}
	case events.Handover:
		if in {
			b.handovers = append(b.handovers, move{at: e.Time, group: groupOf(e), from: obs, to: str(e.Attrs["to"]), epoch: e.Epoch, planned: true})
		}
	case events.GroupStarted:
		if in {
			ms, _ := num(e.Attrs["start_ms"])
			lw, _ := num(e.Attrs["lease_wait_ms"])
			b.started[groupEpoch{groupOf(e), e.Epoch}] = ms + lw
		}
	case events.ResRestart:
		if in {
			b.restarts++
		}
	case events.ResFailure:
		if in {
			b.resFailure++
		}
	case events.Drill:
		if in {
			b.drill(e)
		}
	case events.RaidFail, events.RaidDegradedArray, events.RaidSpareActive, events.RaidRebuildStarted,
		events.RaidRebuildFinished, events.RaidRebuildAborted, events.RaidChecksumRepaired, events.RaidMismatchesFound:
		b.raidEvent(e, in)
	case events.ReplicaState:
		b.replicaEvent(e, in)
	}
	if e.Time.After(b.lastSeen[obs]) {
		b.lastSeen[obs] = e.Time
	}
}

func (b *Builder) link(obs, subject string) *linkStat {
	k := pair{obs, subject}
	l := b.links[k]
	if l == nil {
		l = &linkStat{}
		b.links[k] = l
	}
	return l
}

func (b *Builder) linkUp(l *linkStat, at time.Time) {
	if l.downSince.IsZero() {
		return
	}
	d := b.clip(l.downSince, at)
	l.down += d
	l.longest = max(l.longest, d)
	l.downSince = time.Time{}
}

func (b *Builder) nodeUp(obs, subject string, at time.Time) {
	k := pair{obs, subject}
	if t, down := b.nodeDown[k]; down {
		b.nodeOut[subject] = append(b.nodeOut[subject], span{t, at})
		delete(b.nodeDown, k)
	}
}

// closeObserver ends what obs had open (links down, peers down, quorum
// lost) at the last moment it was heard of: it stopped or crashed then.
func (b *Builder) closeObserver(obs string) {
	at := b.lastSeen[obs]
	for k, l := range b.links {
		if k.a == obs {
			b.linkUp(l, at)
		}
	}
	for k, t := range b.nodeDown {
		if k.a == obs {
			b.nodeOut[k.b] = append(b.nodeOut[k.b], span{t, at})
			delete(b.nodeDown, k)
		}
	}
	if t, lost := b.quorum[obs]; lost {
		b.noQuorum[obs] += b.clip(t, at)
		delete(b.quorum, obs)
	}
}

func (b *Builder) drill(e events.Event) {
	key := e.Time.UTC().Format(time.RFC3339Nano) + "|" + groupOf(e)
	if b.drillSeen[key] { // the same record in two copies of a log
		return
	}
	b.drillSeen[key] = true
	r := drillRow{at: e.Time, node: e.Node, group: groupOf(e), result: str(e.Attrs["result"]), kind: str(e.Attrs["kind"]), message: e.Message}
	r.switchMs, _ = num(e.Attrs["switch_ms"])
	r.verifyMs, _ = num(e.Attrs["verify_ms"])
	r.switchBack, _ = num(e.Attrs["switch_back_ms"])
	b.drills = append(b.drills, r)
}

func (b *Builder) raidEvent(e events.Event, in bool) {
	k := pair{e.Node, e.Subject}
	st := b.raid[k]
	if st == nil {
		st = &raidStat{}
		b.raid[k] = st
	}
	// Routine (a scheduled check, a rebuild finishing) passes; what
	// went wrong is an incident.
	status := Pass
	switch e.Kind {
	case events.RaidFail, events.RaidDegradedArray:
		if !st.degraded {
			st.degraded, st.since = true, e.Time
		}
		status = Attention
	case events.RaidRebuildStarted:
		st.rebuilding = true
	case events.RaidRebuildFinished:
		st.rebuilding = false
		st.degraded = false
	case events.RaidSpareActive:
		st.degraded = false
	case events.RaidRebuildAborted:
		st.rebuilding = false
		status = Attention
	case events.RaidChecksumRepaired, events.RaidMismatchesFound:
		status = Attention
	}
	if !in {
		return
	}
	b.raidCount++
	if status != Pass && len(b.raidRows) < maxRows {
		b.raidRows = append(b.raidRows, incident{at: e.Time, node: e.Node, subject: e.Subject, kind: string(e.Kind), message: e.Message, status: status})
	}
}

// replicaEvent records a replica's disk state (kind replica_state: subject
// "volume/node", attrs.disk). Every voter logs the same change at the same
// time: read from several logs, it counts once.
func (b *Builder) replicaEvent(e events.Event, in bool) {
	disk, prev := str(e.Attrs["disk"]), str(e.Attrs["previous"])
	key := e.Time.UTC().Format(time.RFC3339Nano) + "|" + e.Subject + "|" + disk
	if b.replSeen[key] {
		return
	}
	b.replSeen[key] = true
	if last, ok := b.replica[e.Subject]; !ok || !e.Time.Before(last.at) { // logs come one after another
		b.replica[e.Subject] = replicaRec{disk: disk, at: e.Time}
	}
	if !in {
		return
	}
	b.replCount++
	st := Pass
	if disk != "UpToDate" {
		st = Attention
	}
	// The table has the incidents and the recoveries from them.
	if (st != Pass || prev != "" && prev != "UpToDate") && len(b.replRows) < maxRows {
		b.replRows = append(b.replRows, incident{at: e.Time, node: e.Node, subject: e.Subject, kind: disk, message: e.Message, status: st})
	}
}

// maxRows bounds each table of a report: a busy period lists its first
// rows and counts the rest.
const maxRows = 200

func groupOf(e events.Event) string {
	if e.Group != "" {
		return e.Group
	}
	return e.Subject
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// num reads a number from decoded JSON (float64) or from an event built
// in code (int, int64).
func num(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%.1f days", d.Hours()/24)
}

func pct(part, whole time.Duration) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f %%", 100*float64(part)/float64(whole))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func sortedKeys[V any](m map[pair]V) []pair {
	keys := make([]pair, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].a != keys[j].a {
			return keys[i].a < keys[j].a
		}
		return keys[i].b < keys[j].b
	})
	return keys
}

func join(s []string) string { return strings.Join(s, ", ") }

// SetLog records what reading log i found (entries, its chain check),
// known only once it was read through.
func (b *Builder) SetLog(i int, l Log) { b.in.Logs[i] = l }
