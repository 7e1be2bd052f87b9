// Package report owns `tandem report`, the audit report of a cluster over a
// period: cluster and nodes, heartbeat link redundancy and up-time, RAID and
// replication health, every switchover and failover with its times, the
// failover drills against the required number, encryption and key age,
// audit-log retention and the problems still open at the end. Each section
// says pass, attention or fail.
//
// It is pure: a Builder takes the facts the caller read (configuration,
// key file age, the audit logs' chain checks) and the logs' events one by
// one, and returns a Report; rendering to JSON and self-contained HTML
// writes to an io.Writer. Reading the files and printing to PDF are the
// caller's (cmd/tandem, and pdf.go's Chromium adapter). It imports
// internal/events for the event vocabulary only.
package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Status is a section's verdict.
type Status string

const (
	Pass      Status = "pass"
	Attention Status = "attention"
	Fail      Status = "fail"
)

// worse returns the worse of two statuses.
func worse(a, b Status) Status {
	rank := map[Status]int{Pass: 0, "": 0, Attention: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	if a == "" {
		return Pass
	}
	return a
}

// Requirements an audit report checks against (the regulated users' rules
// issue 14 names).
const (
	RequiredDrillsPerQuarter = 4
	RequiredRetention        = 180 * 24 * time.Hour
	// MaxKeyAge: a cluster key older than this is to be rotated.
	MaxKeyAge = 365 * 24 * time.Hour
	// quarter is the length of a quarter for pro-rating other periods.
	quarter = time.Duration(365.25 / 4 * 24 * float64(time.Hour))
)

// Input is what the caller knows besides the events.
type Input struct {
	Cluster string
	Nodes   []Member
	Groups  []string
	Volumes []string
	// From and To bound the period [From, To); Now is when the report is
	// made (To may be later: a quarter not over yet).
	From, To, Now time.Time
	// PeriodName names the period ("2026Q4", "since 2026-06-01").
	PeriodName string
	// Quarter: the period is a calendar quarter (the drill requirement
	// applies as is, not pro-rated).
	Quarter bool

	// Encrypted: the cluster runs with a key (not insecure: true).
	Encrypted bool
	KeyFile   string
	// KeyCreated is when the key was made (its file's mtime, or a recorded
	// creation); zero when unknown.
	KeyCreated time.Time
	KeySource  string
	KeyErr     string
	// APIOverTCP: the control API listens on TCP (plain HTTP with a bearer
	// token); APIBindAll: on every address.
	APIOverTCP, APIBindAll bool

	// Retention is events.retention of the configuration (0 = for ever).
	Retention time.Duration
	Logs      []Log
}

// Member is a voter of the cluster.
type Member struct {
	Name  string `json:"name"`
	Role  string `json:"role"` // node or witness
	Links int    `json:"links"`
}

// Log is one audit log read for the report, with the check of its hash
// chain (done by the caller: events.Verify).
type Log struct {
	Path       string `json:"path"`
	Entries    int    `json:"entries"`
	Unreadable int    `json:"unreadable_lines,omitempty"`
	ChainOK    bool   `json:"chain_ok"`
	ChainNote  string `json:"chain_note,omitempty"`
	// Compacted: the log starts at a compaction checkpoint (older entries
	// were dropped by retention).
	Compacted bool   `json:"compacted"`
	Err       string `json:"error,omitempty"`
}

// Report is the whole audit report.
type Report struct {
	Cluster    string    `json:"cluster"`
	Period     string    `json:"period"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Generated  time.Time `json:"generated"`
	Status     Status    `json:"status"`
	EventCount int       `json:"events_in_period"`
	Sections   []Section `json:"sections"`
	Empty      bool      `json:"no_data,omitempty"`
}

// Section is one part of the report.
type Section struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	Status   Status    `json:"status"`
	Summary  string    `json:"summary"`
	Findings []Finding `json:"findings,omitempty"`
	Table    *Table    `json:"table,omitempty"`
}

// Finding is one observation with its own verdict.
type Finding struct {
	Status Status `json:"status"`
	Text   string `json:"text"`
}

// Table is a section's detail, rendered as a table.
type Table struct {
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	// More counts rows left out (a busy period's long lists are cut).
	More int `json:"more,omitempty"`
}

func (s *Section) add(st Status, text string) {
	s.Findings = append(s.Findings, Finding{Status: st, Text: text})
	s.Status = worse(s.Status, st)
}

// ParseQuarter reads "2026Q4" (or "2026-Q4", "q4 2026" is not accepted):
// the quarter from its first day to the next quarter's, in UTC.
func ParseQuarter(s string) (from, to time.Time, err error) {
	var year, q int
	clean := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
	if _, err := fmt.Sscanf(clean, "%4dQ%1d", &year, &q); err != nil || q < 1 || q > 4 || year < 1970 || len(clean) != 6 {
		return from, to, fmt.Errorf("report: quarter %q: write YEARQn, e.g. 2026Q4", s)
	}
	from = time.Date(year, time.Month(3*(q-1)+1), 1, 0, 0, 0, 0, time.UTC)
	return from, from.AddDate(0, 3, 0), nil
}

// ParseSince reads the start of a period: a date (2026-06-01), an RFC 3339
// time, or a duration back from now (180d, 12h).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := parseDays(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("report: --since %q: write a date (2026-06-01), a time (2026-06-01T00:00:00Z) or a duration back from now (180d, 12h)", s)
}

// parseDays reads a duration that may start with whole days ("180d",
// "1d12h").
func parseDays(s string) (time.Duration, bool) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, false
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, true
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return days + d, true
}
