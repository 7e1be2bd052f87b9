package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/events"
	"tandem/internal/report"
)

func init() { benchSubcommands = append(benchSubcommands, newBenchReportCmd) }

// reportBench is what `tandem bench report` measured.
type reportBench struct {
	Events int   `json:"events"`
	Bytes  int64 `json:"bytes"`
	Days   int   `json:"days"`
	// WriteS: writing the log through the audit log's own appender.
	WriteS float64 `json:"write_s"`
	// ReadS and VerifyS are the baselines of the same run: reading the
	// file's bytes, and checking its hash chain (parsing every entry).
	ReadS   float64 `json:"read_s"`
	VerifyS float64 `json:"verify_s"`
	// ReportS: the report over the whole period (chain checked, every
	// event folded in), RenderS its HTML.
	ReportS       float64 `json:"report_s"`
	RenderS       float64 `json:"render_html_s"`
	ReportVsRead  float64 `json:"report_vs_read"`
	ReportVsCheck float64 `json:"report_vs_verify"`
	TargetS       float64 `json:"target_s"`
	OK            bool    `json:"ok"`
	HeapMiB       float64 `json:"max_heap_mib"`
	Status        string  `json:"report_status"`
	Load          string  `json:"loadavg,omitempty"`
}

func newBenchReportCmd() *cobra.Command {
	var n, days int
	var asJSON bool
	var keep string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Time tandem report over a busy audit log (issue 14's target: 180 days, 1 million events, < 10 s)",
		Long: "report writes a synthetic busy audit log (--events over --days, through the audit log's\n" +
			"own appender, hash chain and all: links flapping, dropped packets, restarts, a nightly\n" +
			"RAID check, weekly drills, failovers), then times the report over the whole period\n" +
			"against two baselines of the same run: reading the file's bytes, and checking its hash\n" +
			"chain alone (tandem events --verify).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := keep
			if dir == "" {
				d, err := os.MkdirTemp("", "tandem-bench-report-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			logf := func(format string, args ...any) {
				if !asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
				}
			}
			res, err := benchReport(dir, n, days, logf)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "tandem report over %d events (%.0f MiB, %d days), loadavg %s\n", res.Events, float64(res.Bytes)/(1<<20), res.Days, res.Load)
			fmt.Fprintf(w, "  read the file        %6.2f s   (baseline)\n", res.ReadS)
			fmt.Fprintf(w, "  verify the chain     %6.2f s   (baseline: tandem events --verify)\n", res.VerifyS)
			fmt.Fprintf(w, "  report               %6.2f s   = %.2f × verify, %.1f × read; target < %.0f s: %s\n",
				res.ReportS, res.ReportVsCheck, res.ReportVsRead, res.TargetS, map[bool]string{true: "met", false: "NOT met"}[res.OK])
			fmt.Fprintf(w, "  render HTML          %6.2f s\n", res.RenderS)
			fmt.Fprintf(w, "  heap at most %.0f MiB; the report says %s\n", res.HeapMiB, res.Status)
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "events", 1000000, "events in the log")
	cmd.Flags().IntVar(&days, "days", 180, "days the log spans (the report covers them all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringVar(&keep, "keep", "", "write the log into this directory and keep it")
	return cmd
}

func benchReport(dir string, n, days int, logf func(string, ...any)) (*reportBench, error) {
	path := filepath.Join(dir, "events.jsonl")
	os.Remove(path)
	now := time.Now().UTC()
	from := now.Add(-time.Duration(days) * 24 * time.Hour)
	res := &reportBench{Days: days, TargetS: 10}
	logf("writing %d events to %s …", n, path)
	start := time.Now()
	l, err := events.OpenLog(path, 0)
	if err != nil {
		return nil, err
	}
	report.Synthetic(1, n, from, now, func(e events.Event) bool { l.Publish(e); res.Events++; return true })
	if err := l.Close(); err != nil {
		return nil, err
	}
	res.WriteS = time.Since(start).Seconds()
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	res.Bytes = st.Size()

	// Warm the page cache once, so the first timed pass is not the only
	// one reading the disk.
	if _, err := readAll(path); err != nil {
		return nil, err
	}
	start = time.Now()
	if _, err := readAll(path); err != nil {
		return nil, err
	}
	res.ReadS = time.Since(start).Seconds()
	logf("verifying the chain …")
	start = time.Now()
	v, err := events.VerifyFile(path, nil)
	if err != nil {
		return nil, err
	}
	if !v.OK() {
		return nil, fmt.Errorf("bench report: the written log's chain is broken: %v", v.Breaks[0])
	}
	res.VerifyS = time.Since(start).Seconds()

	logf("making the report …")
	in := report.Input{Cluster: "bench", From: from, To: now, Now: now, PeriodName: fmt.Sprintf("%d days", days),
		Nodes:     []report.Member{{Name: "db1", Role: "node", Links: 2}, {Name: "db2", Role: "node", Links: 2}, {Name: "w", Role: "witness", Links: 1}},
		Groups:    []string{"shop-db"},
		Encrypted: true, KeyFile: "(bench)", KeyCreated: from, KeySource: "bench", Retention: report.RequiredRetention}
	var heap runtime.MemStats
	runtime.GC()
	start = time.Now()
	done := make(chan struct{})
	maxHeap := sampleHeap(done)
	rep, err := makeReport(in, []string{path})
	if err != nil {
		return nil, err
	}
	res.ReportS = time.Since(start).Seconds()
	close(done)
	start = time.Now()
	if err := report.WriteHTML(io.Discard, rep); err != nil {
		return nil, err
	}
	res.RenderS = time.Since(start).Seconds()
	runtime.ReadMemStats(&heap)
	res.HeapMiB = float64(max(<-maxHeap, heap.HeapAlloc)) / (1 << 20)
	res.Status = string(rep.Status)
	res.ReportVsRead = res.ReportS / res.ReadS
	res.ReportVsCheck = res.ReportS / res.VerifyS
	res.OK = res.ReportS+res.RenderS < res.TargetS
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = string(bytes.TrimSpace(b))
	}
	return res, nil
}

func readAll(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(io.Discard, f)
}

// sampleHeap reports the largest heap seen every 50 ms until done.
func sampleHeap(done <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var most uint64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			most = max(most, m.HeapAlloc)
			select {
			case <-done:
				out <- most
				return
			case <-t.C:
			}
		}
	}()
	return out
}
