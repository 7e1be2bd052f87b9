package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/pgwire"
)

// The database client of the storage proof (issue 12): it commits
// transactions through the VIP and records each one it saw committed, so
// that after a failover every recorded one can be looked for.

// PGClientConfig configures the writer.
type PGClientConfig struct {
	Addr string // the VIP's host:port
	// Clients is how many sessions commit at once, each one transaction in
	// flight (default 4).
	Clients int
	// OpTimeout bounds one commit: a commit unanswered by then has an
	// unknown outcome and its session dials again (default 500 ms; the
	// TCP retransmission to a dead node would otherwise come 1-3 s late).
	OpTimeout time.Duration
	// DialTimeout bounds one connection attempt (default 200 ms, shorter
	// than the kernel's first SYN retransmission at 1 s).
	DialTimeout time.Duration
	// Pad is how many bytes of payload each row carries (default 100).
	Pad int
}

func (c PGClientConfig) withDefaults() PGClientConfig {
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 500 * time.Millisecond
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 200 * time.Millisecond
	}
	if c.Pad <= 0 {
		c.Pad = 100
	}
	return c
}

// PGRecord is one line of the client's history: a commit it saw
// acknowledged (Seq set), or the first failure after a success (Err set).
type PGRecord struct {
	Seq int64 `json:"seq,omitempty"`
	// Sent and At: when the commit was sent and its acknowledgement read
	// (Unix ns, the client host's clock).
	Sent int64 `json:"sent,omitempty"`
	At   int64 `json:"at"`
	// Server is the committing postmaster's start time: a new value is a
	// new server, on the other node after a failover.
	Server string `json:"server,omitempty"`
	Client int    `json:"client"`
	Err    string `json:"err,omitempty"`
}

// pgTable is where the client commits; seq is the client's number, so a
// row found is a commit recorded.
const pgTable = "tandem_commits"

// RunPGClient commits INSERTs through cfg.Addr from cfg.Clients sessions
// until ctx ends, calling record for each acknowledged commit and for the
// first failure of a session after a success. Sessions dial again at once
// after any failure: the client-seen outage is then the time the
// database could not commit.
func RunPGClient(ctx context.Context, cfg PGClientConfig, record func(PGRecord)) error {
	cfg = cfg.withDefaults()
	// One session makes the table first: concurrent CREATE IF NOT EXISTS
	// can fail on the catalog's unique index.
	create := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (seq bigint PRIMARY KEY, client int NOT NULL, "+
		"at timestamptz NOT NULL DEFAULT clock_timestamp(), pad text NOT NULL)", pgTable)
	for {
		if err := pgOnce(ctx, cfg, create); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		pgPause(ctx, 50*time.Millisecond)
	}
	// Sequence numbers go on from the highest in the table, so a client
	// run again on the same database commits new rows.
	next, err := pgMaxSeq(ctx, cfg)
	if err != nil || ctx.Err() != nil {
		return err
	}
	var seq atomic.Int64
	seq.Store(next)
	var mu sync.Mutex
	rec := func(r PGRecord) {
		mu.Lock()
		defer mu.Unlock()
		record(r)
	}
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Go(func() { pgSession(ctx, cfg, i, &seq, rec) })
	}
	wg.Wait()
	return nil
}

func pgDial(ctx context.Context, cfg PGClientConfig) (*pgwire.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	return pgwire.Dial(dctx, cfg.Addr, "postgres", "postgres")
}

// pgOnce runs one statement on a new session.
func pgOnce(ctx context.Context, cfg PGClientConfig, sql string) error {
	c, err := pgDial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.Query(qctx, sql)
	return err
}

func pgMaxSeq(ctx context.Context, cfg PGClientConfig) (int64, error) {
	for {
		c, err := pgDial(ctx, cfg)
		if err == nil {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var res pgwire.Result
			res, err = c.Query(qctx, "SELECT coalesce(max(seq), 0) FROM "+pgTable)
			cancel()
			c.Close()
			if err == nil && len(res.Rows) == 1 && len(res.Rows[0]) == 1 {
				return strconv.ParseInt(res.Rows[0][0], 10, 64)
			}
		}
		if ctx.Err() != nil {
			return 0, nil // stopped before the database answered: nothing to do
		}
		pgPause(ctx, 50*time.Millisecond)
	}
}

// pgSession commits one transaction after another on one session, dialling
// again after any failure.
func pgSession(ctx context.Context, cfg PGClientConfig, id int, seq *atomic.Int64, record func(PGRecord)) {
	pad := strings.Repeat("x", cfg.Pad)
	var c *pgwire.Conn
	failing := false
	fail := func(err error) {
		if c != nil {
			c.Close()
			c = nil
		}
		if !failing && ctx.Err() == nil {
			record(PGRecord{At: time.Now().UnixNano(), Client: id, Err: err.Error()})
		}
		failing = true
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = pgDial(ctx, cfg); err != nil {
				fail(err)
				// A refused connection comes back at once: do not spin.
				pgPause(ctx, 10*time.Millisecond)
				continue
			}
		}
		n := seq.Add(1)
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		res, err := c.Query(qctx, fmt.Sprintf("INSERT INTO %s (seq, client, pad) VALUES (%d, %d, '%s') RETURNING pg_postmaster_start_time()",
			pgTable, n, id, pad))
		cancel()
		if err != nil || len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
			if err == nil {
				err = fmt.Errorf("unexpected answer %+v", res)
			}
			fail(err)
			continue
		}
		failing = false
		record(PGRecord{Seq: n, Sent: sent.UnixNano(), At: time.Now().UnixNano(), Server: res.Rows[0][0], Client: id})
	}
}

// PGRanges returns the runs of consecutive seq values in the table, as
// [first, last] pairs in order: a compact picture of every committed row
// however many there are.
func PGRanges(ctx context.Context, addr string) ([][2]int64, error) {
	c, err := pgwire.Dial(ctx, addr, "postgres", "postgres")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res, err := c.Query(ctx, fmt.Sprintf("SELECT min(seq), max(seq) FROM (SELECT seq, seq - row_number() OVER (ORDER BY seq) AS g FROM %s) s GROUP BY g ORDER BY 1", pgTable))
	if err != nil {
		return nil, err
	}
	out := make([][2]int64, 0, len(res.Rows))
	for _, row := range res.Rows {
		if len(row) != 2 {
			return nil, fmt.Errorf("testbed: ranges: row %v", row)
		}
		lo, err1 := strconv.ParseInt(row[0], 10, 64)
		hi, err2 := strconv.ParseInt(row[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("testbed: ranges: %w", err)
		}
		out = append(out, [2]int64{lo, hi})
	}
	return out, nil
}

// ParsePGRanges reads what `tandem bench-pg-client --ranges` prints: a
// JSON array of [first, last] pairs.
func ParsePGRanges(b []byte) ([][2]int64, error) {
	var out [][2]int64
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("testbed: ranges: %w", err)
	}
	return out, nil
}

// ReadPGHistory parses the client's JSON lines; a torn last line (the
// client killed mid-write) is left out.
func ReadPGHistory(r io.Reader) ([]PGRecord, error) {
	var out []PGRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec PGRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			continue
		}
		out = append(out, rec)
	}
	return out, sc.Err()
}

// PGLost returns the commits of history that ranges (what the database
// holds) lack: transactions the client saw committed and the database
// lost.
func PGLost(history []PGRecord, ranges [][2]int64) []int64 {
	var lost []int64
	for _, r := range history {
		if r.Seq == 0 {
			continue
		}
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i][1] >= r.Seq })
		if i == len(ranges) || ranges[i][0] > r.Seq {
			lost = append(lost, r.Seq)
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i] < lost[j] })
	return lost
}

// PGFailover is what the client saw of one fault.
type PGFailover struct {
	// From and To are the servers (postmaster start times) that committed
	// last before and first after it.
	From, To string
	// LastOld and FirstNew: the acknowledgements that bound the outage.
	LastOld, FirstNew time.Time
	OutageMs          float64
}

// PGOutage finds, in history, the fault at `at`: the server that committed
// last before it, its last acknowledgement, and the first acknowledgement
// of another server after it. ok is false when no other server has
// committed yet.
func PGOutage(history []PGRecord, at time.Time) (PGFailover, bool) {
	var commits []PGRecord
	for _, r := range history {
		if r.Seq != 0 {
			commits = append(commits, r)
		}
	}
	sort.Slice(commits, func(i, j int) bool { return commits[i].At < commits[j].At })
	t := at.UnixNano()
	var f PGFailover
	lastOld := int64(0)
	for _, c := range commits {
		if c.At < t {
			f.From = c.Server
			continue
		}
		if f.From == "" {
			return f, false // nothing committed before the fault
		}
		break
	}
	for _, c := range commits {
		if c.Server == f.From && lastOld < c.At {
			lastOld = c.At
		}
		if c.At >= t && c.Server != f.From {
			f.To = c.Server
			f.LastOld, f.FirstNew = time.Unix(0, lastOld), time.Unix(0, c.At)
			f.OutageMs = float64((c.At-lastOld)/1000) / 1000
			return f, true
		}
	}
	return f, false
}

// pgPause waits d or until ctx ends.
func pgPause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
