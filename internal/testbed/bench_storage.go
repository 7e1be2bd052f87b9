package testbed

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// StorageBenchOptions configure `tandem bench storage` (issue 12).
type StorageBenchOptions struct {
	Binary string
	// Runs per fault (default 20).
	Runs int
	// Faults among StorageFaults (default all).
	Faults []string
	// Clients is how many sessions the database client commits from
	// (default 4).
	Clients int
	// PgbenchTime is how long each pgbench round runs (default 10 s; two
	// rounds on each database, alternating); PgbenchClients its sessions
	// (default 4).
	PgbenchTime    time.Duration
	PgbenchClients int
	// Stress runs stress-ng with these arguments all through (nil: none).
	Stress []string
	Logf   func(format string, args ...any)
	Keep   bool
}

// StorageFaults: the active node SIGKILLed (every process on it), frozen
// (SIGSTOP, thawed after the takeover) and cut off from the other voters
// (the client still reaches it, so a deposed primary that could commit
// would show).
var StorageFaults = []string{"kill", "freeze", "cutoff"}

// TakeoverParts are the takeover event's milliseconds the bench reports:
// detect (last heard → declared down), decide (→ placement applied on the
// new node), lease wait, promote (volume), mount (filesystem), service
// (postgres until pg_isready), vip, and their total.
var TakeoverParts = []string{"detect", "decide", "lease_wait", "promote", "mount", "service", "vip", "total"}

// Dist summarises samples in ms.
type Dist struct {
	N      int     `json:"n"`
	Min    float64 `json:"min_ms"`
	Median float64 `json:"median_ms"`
	P95    float64 `json:"p95_ms"`
	Max    float64 `json:"max_ms"`
}

func distOf(samples []float64) Dist {
	if len(samples) == 0 {
		return Dist{}
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	return Dist{N: len(s), Min: s[0], Median: percentile(s, 50), P95: percentile(s, 95), Max: s[len(s)-1]}
}

// StorageRun is one measured failover.
type StorageRun struct {
	Fault string    `json:"fault"`
	From  string    `json:"from"`
	To    string    `json:"to,omitempty"`
	At    time.Time `json:"at"`
	// OK: another node committed for the client in time.
	OK bool `json:"ok"`
	// OutageMs: the client's last commit on the old server to its first
	// on the new one.
	OutageMs float64 `json:"outage_ms"`
	// Lost: commits recorded before the check that the new server lacks.
	Lost    int `json:"lost"`
	Checked int `json:"checked"`
	// Parts: the takeover event's milliseconds (TakeoverParts).
	Parts map[string]float64 `json:"parts_ms,omitempty"`
}

// StorageFaultResult is the figures of one fault, or of all ("overall").
type StorageFaultResult struct {
	Fault     string `json:"fault"`
	Failovers int    `json:"failovers"`
	// Unrecovered: runs in which no other node committed within the wait.
	Unrecovered      int     `json:"unrecovered"`
	LostTransactions int     `json:"lost_transactions"`
	OutageMedianMs   float64 `json:"outage_median_ms"`
	OutageP95Ms      float64 `json:"outage_p95_ms"`
	Outage           Dist    `json:"outage"`
	// Split: the takeover's parts (median and p95 of each).
	Split map[string]Dist `json:"split"`
}

// StorageBenchResult is what `tandem bench storage --json` prints.
type StorageBenchResult struct {
	Runs    int                  `json:"runs"`
	Faults  []StorageFaultResult `json:"faults"`
	Overall StorageFaultResult   `json:"overall"`
	// CommitsChecked: the client's commits, every one looked for in the
	// database after the last failover.
	CommitsChecked int `json:"commits_checked"`
	// pgbench's TPC-B-like load (scale 1) from the client host on the
	// replicated volume (sync) through the VIP, and on a directory of the
	// same machine's disk (not replicated), alternating, in this run.
	TPSRatio      float64 `json:"tps_ratio"`
	ReplicatedTPS float64 `json:"replicated_tps"`
	LocalTPS      float64 `json:"local_tps"`
	// LocalLoopTPS: ext4 on a loop device over a file of the same disk,
	// the block-device path without FUSE, NBD or replication;
	// TPSRatioLoop is the replicated volume against it.
	LocalLoopTPS float64 `json:"local_loop_tps"`
	TPSRatioLoop float64 `json:"tps_ratio_loop"`
	// LocalNBDTPS: ext4 on a loop device over nbdfuse, served by nbdkit's
	// file plugin (the volume's attach path here, with a third-party
	// server and no replication); NBDRatio is it against the directory,
	// the most the replicated volume could keep on this kernel, and
	// TPSRatioNBD the replicated volume against it.
	LocalNBDTPS    float64 `json:"local_nbd_tps"`
	NBDRatio       float64 `json:"nbd_ratio"`
	TPSRatioNBD    float64 `json:"tps_ratio_nbd"`
	PgbenchClients int     `json:"pgbench_clients"`
	PgbenchSeconds float64 `json:"pgbench_seconds"`
	// Load averages (1, 5, 15 min) when the run began and ended.
	LoadBefore [3]float64 `json:"loadavg_before"`
	LoadAfter  [3]float64 `json:"loadavg_after"`
	Stress     string     `json:"stress,omitempty"`
	// Targets (issue 12): 0 lost, outage median ≤ 2 s and p95 ≤ 4 s,
	// tps_ratio ≥ 0.7.
	TargetsMet map[string]bool `json:"targets_met"`
	Seconds    float64         `json:"seconds"`
	Samples    []StorageRun    `json:"samples"`
	Notes      []string        `json:"notes,omitempty"`
}

// summarizeStorage fills the per-fault and overall figures from the runs.
func summarizeStorage(res *StorageBenchResult, faults []string) {
	res.Faults = nil
	for _, f := range faults {
		res.Faults = append(res.Faults, storageFigures(f, res.Samples, func(r StorageRun) bool { return r.Fault == f }))
	}
	res.Overall = storageFigures("overall", res.Samples, func(StorageRun) bool { return true })
	res.TPSRatio = ratio(res.ReplicatedTPS, res.LocalTPS)
	res.TPSRatioLoop = ratio(res.ReplicatedTPS, res.LocalLoopTPS)
	res.NBDRatio = ratio(res.LocalNBDTPS, res.LocalTPS)
	res.TPSRatioNBD = ratio(res.ReplicatedTPS, res.LocalNBDTPS)
	o := res.Overall
	res.TargetsMet = map[string]bool{
		"lost_transactions_0":       o.LostTransactions == 0 && o.Unrecovered == 0,
		"outage_median_le_2000ms":   o.Failovers > 0 && o.OutageMedianMs <= 2000,
		"outage_p95_le_4000ms":      o.Failovers > 0 && o.OutageP95Ms <= 4000,
		"tps_ratio_ge_0.7":          res.TPSRatio >= 0.7,
		"failovers_ge_20_per_fault": minFailovers(res.Faults) >= 20,
	}
}

func minFailovers(fs []StorageFaultResult) int {
	m := -1
	for _, f := range fs {
		if m < 0 || f.Failovers < m {
			m = f.Failovers
		}
	}
	return max(m, 0)
}

func storageFigures(name string, runs []StorageRun, in func(StorageRun) bool) StorageFaultResult {
	r := StorageFaultResult{Fault: name, Split: map[string]Dist{}}
	var outages []float64
	parts := map[string][]float64{}
	for _, s := range runs {
		if !in(s) {
			continue
		}
		r.LostTransactions += s.Lost
		if !s.OK {
			r.Unrecovered++
			continue
		}
		r.Failovers++
		outages = append(outages, s.OutageMs)
		for k, v := range s.Parts {
			parts[k] = append(parts[k], v)
		}
	}
	r.Outage = distOf(outages)
	r.OutageMedianMs, r.OutageP95Ms = r.Outage.Median, r.Outage.P95
	for _, k := range TakeoverParts {
		if len(parts[k]) > 0 {
			r.Split[k] = distOf(parts[k])
		}
	}
	return r
}

// PrintStorageBench writes the human report.
func PrintStorageBench(w io.Writer, r StorageBenchResult) {
	fmt.Fprintf(w, "\ntandem bench storage: PostgreSQL 15 on a replicated ext4 volume (sync); %d runs per fault\n", r.Runs)
	if r.Stress != "" {
		fmt.Fprintf(w, "under %s all through\n", r.Stress)
	}
	fmt.Fprintf(w, "load average before %.2f %.2f %.2f, after %.2f %.2f %.2f\n", r.LoadBefore[0], r.LoadBefore[1], r.LoadBefore[2], r.LoadAfter[0], r.LoadAfter[1], r.LoadAfter[2])
	fmt.Fprintln(w, "client-seen outage (last commit on the old node → first on the new), ms: min / median / p95 / max")
	row := func(f StorageFaultResult) {
		o := f.Outage
		fmt.Fprintf(w, "  %-8s failovers %2d  lost %d  outage %5.0f / %5.0f / %5.0f / %5.0f", f.Fault, f.Failovers, f.LostTransactions, o.Min, o.Median, o.P95, o.Max)
		if f.Unrecovered > 0 {
			fmt.Fprintf(w, "  (%d never recovered)", f.Unrecovered)
		}
		fmt.Fprintln(w)
		var parts []string
		for _, k := range TakeoverParts {
			if d, ok := f.Split[k]; ok {
				parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", k, d.Median, d.P95))
			}
		}
		fmt.Fprintf(w, "           takeover median/p95 ms: %s\n", strings.Join(parts, ", "))
	}
	for _, f := range r.Faults {
		row(f)
	}
	row(r.Overall)
	fmt.Fprintf(w, "commits checked: %d\n", r.CommitsChecked)
	fmt.Fprintf(w, "pgbench (%d clients, 2 × %.0f s each): replicated %.0f tps, local directory %.0f tps, ratio %.2f; ext4 on a local loop device %.0f tps, ratio %.2f; ext4 on nbdfuse + loop from nbdkit %.0f tps (%.2f of the directory), ratio %.2f\n",
		r.PgbenchClients, r.PgbenchSeconds, r.ReplicatedTPS, r.LocalTPS, r.TPSRatio, r.LocalLoopTPS, r.TPSRatioLoop, r.LocalNBDTPS, r.NBDRatio, r.TPSRatioNBD)
	var keys []string
	for k := range r.TargetsMet {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "target %-28s %v\n", k, r.TargetsMet[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "\n%.0f s\n", r.Seconds)
}

// takeoverParts reads the takeover event's milliseconds.
func takeoverParts(attrs map[string]any) map[string]float64 {
	out := map[string]float64{}
	for _, k := range TakeoverParts {
		switch v := attrs[k+"_ms"].(type) {
		case float64:
			out[k] = v
		case int64:
			out[k] = float64(v)
		case int:
			out[k] = float64(v)
		}
	}
	return out
}
