package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/report"
	"tandem/internal/report/pdf"
)

func init() { subcommands = append(subcommands, newReportCmd) }

func newReportCmd() *cobra.Command {
	var cfgPath, since, until, quarter, format, out string
	var files []string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "The audit report of a period: links, storage, failovers, drills, encryption, retention",
		Long: "report reads the audit logs (events.file of --config, or each --file: a node's own log and\n" +
			"copies of its peers') with their hash chains checked, and writes the audit report of the\n" +
			"period: cluster and nodes, heartbeat link redundancy and up-time, RAID and replication\n" +
			"health, every switchover and failover with its detect/decide/start times, the failover\n" +
			"drills against the required 4 a quarter, encryption and key age, audit-log retention\n" +
			"against 180 days, and the problems open at its end; each section pass, attention or fail.\n" +
			"--format html (self-contained), json, or pdf (headless Chromium, needs -o).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			from, to, name, isQuarter, err := reportPeriod(since, until, quarter, now)
			if err != nil {
				return exitWith(2, err)
			}
			if format != "html" && format != "json" && format != "pdf" {
				return exitWith(2, fmt.Errorf("--format %q: write html, json or pdf", format))
			}
			browser := ""
			if format == "pdf" {
				if out == "" || out == "-" {
					return exitWith(2, errors.New("--format pdf needs -o FILE"))
				}
				if browser, err = pdf.FindBrowser(); err != nil {
					return err
				}
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return fmt.Errorf("report: the cluster's configuration is needed (members, key, retention): %w", err)
			}
			if len(files) == 0 {
				files = []string{cfg.Events.File}
			}
			in := reportInput(cfg, from, to, now, name, isQuarter)
			rep, err := makeReport(in, files)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			switch format {
			case "json":
				err = report.WriteJSON(&buf, rep)
			default:
				err = report.WriteHTML(&buf, rep)
			}
			if err != nil {
				return err
			}
			if format == "pdf" {
				return pdf.Print(context.Background(), browser, buf.Bytes(), out, 2*time.Minute)
			}
			if out == "" || out == "-" {
				_, err = io.Copy(cmd.OutOrStdout(), &buf)
				return err
			}
			return os.WriteFile(out, buf.Bytes(), 0o640)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster configuration")
	cmd.Flags().StringArrayVar(&files, "file", nil, "an audit log to read (repeat for each node's log; default: events.file of --config)")
	cmd.Flags().StringVar(&since, "since", "", "start of the period: a date (2026-06-01), a time, or a duration back (180d)")
	cmd.Flags().StringVar(&until, "until", "", "end of the period with --since (default: now)")
	cmd.Flags().StringVar(&quarter, "quarter", "", "the period is this quarter, e.g. 2026Q4 (default: the current quarter)")
	cmd.Flags().StringVar(&format, "format", "html", "html, json or pdf")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE (default: standard output; pdf needs it)")
	return cmd
}

// reportPeriod reads --since/--until or --quarter (default: the quarter
// now is in).
func reportPeriod(since, until, quarter string, now time.Time) (from, to time.Time, name string, isQuarter bool, err error) {
	switch {
	case since != "" && quarter != "":
		return from, to, "", false, errors.New("give --since or --quarter, not both")
	case until != "" && since == "":
		return from, to, "", false, errors.New("--until goes with --since")
	case since != "":
		if from, err = report.ParseSince(since, now); err != nil {
			return
		}
		to = now
		if until != "" {
			if to, err = report.ParseSince(until, now); err != nil {
				return
			}
		}
		if !to.After(from) {
			return from, to, "", false, fmt.Errorf("the period from %s to %s is empty", from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		return from, to, from.Format("2006-01-02") + " to " + to.Format("2006-01-02"), false, nil
	}
	if quarter == "" {
		quarter = fmt.Sprintf("%dQ%d", now.Year(), (int(now.Month())-1)/3+1)
	}
	from, to, err = report.ParseQuarter(quarter)
	return from, to, strings.ToUpper(quarter), true, err
}

// reportInput is what the configuration and the key file tell the report.
func reportInput(cfg *config.Config, from, to, now time.Time, name string, quarter bool) report.Input {
	in := report.Input{Cluster: cfg.Cluster, From: from, To: to, Now: now, PeriodName: name, Quarter: quarter,
		Encrypted: !cfg.Insecure, KeyFile: cfg.KeyFile, Retention: cfg.Events.Retention.D(),
		APIOverTCP: cfg.API.TCPPort != 0, APIBindAll: cfg.API.BindAll}
	for _, n := range cfg.Nodes {
		in.Nodes = append(in.Nodes, report.Member{Name: n.Name, Role: "node", Links: len(n.Links)})
	}
	if w := cfg.Witness; w != nil {
		in.Nodes = append(in.Nodes, report.Member{Name: w.Name, Role: "witness", Links: len(w.Links)})
	}
	for _, g := range cfg.Groups {
		in.Groups = append(in.Groups, g.Name)
	}
	for _, v := range cfg.Volumes {
		in.Volumes = append(in.Volumes, v.Name)
	}
	if in.Encrypted {
		if st, err := os.Stat(cfg.KeyFile); err != nil {
			in.KeyErr = err.Error()
		} else {
			in.KeyCreated, in.KeySource = st.ModTime().UTC(), "the key file's mtime"
		}
	}
	return in
}

// makeReport reads each log once, checking its chain while its events
// go to the report.
func makeReport(in report.Input, files []string) (report.Report, error) {
	in.Logs = make([]report.Log, len(files))
	for i, f := range files {
		in.Logs[i] = report.Log{Path: f}
	}
	b := report.NewBuilder(in)
	for i, path := range files {
		l := report.Log{Path: path}
		f, err := os.Open(path)
		if err != nil {
			l.Err = err.Error()
			b.SetLog(i, l)
			continue
		}
		v, err := events.VerifyEach(f, nil, func(e events.Event) { b.Add(i, e) })
		f.Close()
		if err != nil {
			l.Err = err.Error()
			b.SetLog(i, l)
			continue
		}
		l.Entries, l.Unreadable, l.ChainOK, l.Compacted = v.Entries, v.BadCount, v.OK(), v.Checkpoint != nil
		if !v.OK() {
			l.ChainNote = fmt.Sprintf("%d broken link(s), the first at line %d: %s", v.BreakCount, v.Breaks[0].Line, v.Breaks[0].Reason)
		}
		b.SetLog(i, l)
	}
	return b.Report(), nil
}
