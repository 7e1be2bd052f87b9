package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"tandem/internal/events"
	"tandem/internal/state"
)

// storageMount is where the bench's group mounts its volume (in the
// agents' own mount namespaces).
const storageMount = "/mnt/tandem-bench-pg"

// localPGPort is the baseline PostgreSQLs' first port (the group's
// listens on 5432 on every address of the active node).
const localPGPort = 5433

// RunStorageBench measures PostgreSQL on a replicated volume (issue 12):
// pgbench on the replicated volume against the machine's own disk, then
// each fault Runs times with the database client committing all along:
// the client-seen outage, the takeover's split and the committed
// transactions lost.
func RunStorageBench(ctx context.Context, opts StorageBenchOptions) (StorageBenchResult, error) {
	faults, err := parseFaults(opts.Faults, StorageFaults)
	if err != nil {
		return StorageBenchResult{}, err
	}
	if err := HavePostgres(); err != nil {
		return StorageBenchResult{}, fmt.Errorf("testbed: %w", err)
	}
	if opts.Runs <= 0 {
		opts.Runs = 20
	}
	if opts.Clients <= 0 {
		opts.Clients = 4
	}
	if opts.PgbenchTime <= 0 {
		opts.PgbenchTime = 10 * time.Second
	}
	if opts.PgbenchClients <= 0 {
		opts.PgbenchClients = 4
	}
	logf := orDiscard(opts.Logf)
	begin := time.Now()
	res := StorageBenchResult{Runs: opts.Runs, PgbenchClients: opts.PgbenchClients, PgbenchSeconds: opts.PgbenchTime.Seconds(), LoadBefore: loadavg()}
	bed, err := newBenchBed(ctx, opts.Binary, logf, opts.Keep)
	if err != nil {
		return res, err
	}
	defer bed.Close()
	fail := func(err error) (StorageBenchResult, error) {
		bed.Fail()
		return res, fmt.Errorf("%w (logs in %s)", err, bed.Dir)
	}
	stopStress, err := benchStress(ctx, bed, opts.Stress, &res.Stress, logf)
	if err != nil {
		return res, err
	}
	defer stopStress()
	g := PostgresGroup("db", storageMount)
	c, err := bed.NewCluster(Spec{Groups: []GroupSpec{g}})
	if err != nil {
		return res, err
	}
	if err := c.Start(); err != nil {
		return fail(err)
	}
	if err := c.WaitRunning(ctx, "db", "node1", 90*time.Second); err != nil {
		return fail(err)
	}
	vip := netip.AddrPortFrom(VIPAddr(g.VIP), PostgresPort).String()
	if err := storageTPS(ctx, bed, &res, vip, opts, logf); err != nil {
		return fail(err)
	}

	client, err := bed.StartPGClient(VIPAddr(g.VIP), opts.Clients)
	if err != nil {
		return fail(err)
	}
	defer client.Stop()
	sb := &storageBench{bed: bed, c: c, client: client, logf: logf}
	for _, fault := range faults {
		for i := range opts.Runs {
			r, err := sb.once(ctx, fault)
			if err != nil {
				return fail(fmt.Errorf("%s run %d: %w", fault, i+1, err))
			}
			res.Samples = append(res.Samples, r)
			what := fmt.Sprintf("%.0f ms, lost %d of %d", r.OutageMs, r.Lost, r.Checked)
			if !r.OK {
				what = "no other node committed"
			}
			logf("storage %s %d/%d on %s: %s %v", fault, i+1, opts.Runs, r.From, what, r.Parts)
		}
	}
	client.Stop()
	lost, checked, err := client.Verify(ctx)
	if err != nil {
		return fail(err)
	}
	res.CommitsChecked = checked
	if len(lost) > 0 {
		// Lost since the last per-run check (none should be): count them
		// against the last run.
		res.Samples[len(res.Samples)-1].Lost += len(lost)
		logf("storage: %d committed transactions missing at the end: %v", len(lost), lost[:min(len(lost), 20)])
	}
	summarizeStorage(&res, faults)
	if res.Overall.LostTransactions > 0 || res.Overall.Unrecovered > 0 {
		bed.Fail() // keep the logs
	}
	res.LoadAfter = loadavg()
	res.Seconds = time.Since(begin).Seconds()
	res.Notes = append(res.Notes,
		"group: volume (sync) → ext4 (nbdfuse + loop on this kernel, which has no nbd module) → postgres 15 (exec, pg_isready check) → VIP; agents in their own mount namespaces; every daemon under SCHED_RR as the bed runs them",
		fmt.Sprintf("client: %d sessions on the client host, each one INSERT (autocommit) in flight; a commit unanswered in 500 ms is abandoned (unknown outcome, not counted) and the session dials again every 200 ms", opts.Clients),
		"kill: SIGKILL of every process on the active node; freeze: SIGSTOP of them, thawed after the takeover; cutoff: every packet between the active node and the other voters dropped (the client still reaches it); each run waits until the old node is back and its replica is UpToDate again",
		"outage: the client's last acknowledged commit on the old server to its first on the new (postmaster start times tell them apart)",
		"lost: after each failover, every commit the client recorded is looked for in the database the VIP then serves")
	return res, nil
}

// storageTPS runs pgbench on the replicated volume through the VIP, on a
// local directory and on ext4 on a loop device over a local file, two
// rounds each, in turn.
func storageTPS(ctx context.Context, bed *Bed, res *StorageBenchResult, vip string, opts StorageBenchOptions, logf func(string, ...any)) error {
	dir, err := bed.StartLocalPostgres(ctx, "node1", localPGPort, LocalDir)
	if err != nil {
		return err
	}
	defer dir.Stop()
	loop, err := bed.StartLocalPostgres(ctx, "node1", localPGPort+1, LocalLoop)
	if err != nil {
		return err
	}
	defer loop.Stop()
	nbd, err := bed.StartLocalPostgres(ctx, "node1", localPGPort+2, LocalNBD)
	if err != nil {
		return err
	}
	defer nbd.Stop()
	for round := range 2 {
		for _, t := range []struct {
			addr string
			sum  *float64
		}{{dir.Addr, &res.LocalTPS}, {loop.Addr, &res.LocalLoopTPS}, {nbd.Addr, &res.LocalNBDTPS}, {vip, &res.ReplicatedTPS}} {
			tps, err := bed.Pgbench(ctx, t.addr, opts.PgbenchClients, opts.PgbenchTime, round == 0)
			if err != nil {
				return err
			}
			logf("storage: pgbench at %s: %.0f tps", t.addr, tps)
			*t.sum += tps / 2
		}
	}
	return nil
}

type storageBench struct {
	bed    *Bed
	c      *Cluster
	client *PGClient
	logf   func(string, ...any)
	// lastMove: when the client last saw a new server commit.
	lastMove time.Time
}

// once runs one fault: it waits until the group runs with the other
// replica UpToDate and the client commits, injects the fault on the
// active node, measures the client-seen outage, checks that every
// recorded commit is there, and undoes the fault.
func (s *storageBench) once(ctx context.Context, fault string) (StorageRun, error) {
	active, err := s.ready(ctx)
	if err != nil {
		return StorageRun{}, err
	}
	other := otherNode(active)
	r := StorageRun{Fault: fault, From: active}
	var f Fault
	switch fault {
	case "kill":
		f = s.bed.Kill(active)
	case "freeze":
		f = s.bed.Freeze(active)
	case "cutoff":
		f, err = s.bed.CutOff(active)
	}
	if err != nil {
		return r, err
	}
	r.At = f.At
	var fo PGFailover
	err = waitFor(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		h, err := s.client.Since(f.At.Add(-5 * time.Second))
		if err != nil {
			return false, err
		}
		var ok bool
		fo, ok = PGOutage(h, f.At)
		return ok, nil
	}, "the client to commit on another server after the %s of %s", fault, active)
	if err == nil {
		r.OK, r.OutageMs, r.To = true, fo.OutageMs, other
		s.lastMove = fo.FirstNew
		began := time.Now()
		lost, checked, err := s.client.Verify(ctx)
		if err != nil {
			return r, err
		}
		if d := time.Since(began); d > 2*time.Second {
			s.logf("storage: checking %d commits took %v", checked, d.Round(time.Millisecond))
		}
		r.Lost, r.Checked = len(lost), checked
		if len(lost) > 0 {
			s.logf("storage: %s of %s: %d committed transactions lost: %v", fault, active, len(lost), lost[:min(len(lost), 20)])
		}
		if e, err := s.c.WaitEvent(ctx, other, f.At, 10*time.Second, Kind(events.Takeover, "db")); err == nil {
			r.Parts = takeoverParts(e.Attrs)
		} else {
			s.logf("storage: no takeover event on %s: %v", other, err)
		}
	} else {
		s.logf("storage: %v", err)
	}
	switch fault {
	case "kill":
		err = s.c.Start(active)
	case "freeze":
		s.bed.Thaw(active)
	case "cutoff":
		_, err = s.bed.Heal()
	}
	return r, err
}

// ready waits until every agent is up and has run for a second, the
// group runs, the standby's replica is recorded UpToDate, the client has
// committed on the active node lately, and the client's neighbour entry
// for the VIP can change again (1 s locktime after the last move); it
// returns the active node.
func (s *storageBench) ready(ctx context.Context) (string, error) {
	if err := s.c.WaitUp(ctx, 60*time.Second, Voters...); err != nil {
		return "", err
	}
	var active string
	err := waitFor(ctx, 120*time.Second, 50*time.Millisecond, func() (bool, error) {
		for _, h := range Voters {
			st, err := s.c.Status(ctx, h)
			if err != nil || st.Uptime < 1 {
				return false, nil
			}
		}
		v, err := s.c.GroupView(ctx, "db")
		if err != nil || !v.Running || v.Holder == "" {
			return false, nil
		}
		st, err := s.c.Status(ctx, v.Holder)
		if err != nil || len(st.Volumes) == 0 {
			return false, nil
		}
		if rep, ok := st.Volumes[0].Replicas[otherNode(v.Holder)]; !ok || rep.Disk != state.DiskUpToDate {
			return false, nil
		}
		active = v.Holder
		return true, nil
	}, "the group to run with the standby's replica UpToDate")
	if err != nil {
		return "", err
	}
	// Committing now: 20 commits after this moment.
	since := time.Now().UnixNano()
	err = waitFor(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		h, err := s.client.Since(time.Unix(0, since))
		if err != nil {
			return false, err
		}
		n := 0
		for _, r := range h {
			if r.Seq != 0 && r.At >= since {
				n++
			}
		}
		return n >= 20, nil
	}, "the client to commit on %s", active)
	if err != nil {
		return "", err
	}
	sleepCtx(ctx, time.Until(s.lastMove.Add(clientLocktime)))
	return active, nil
}

func otherNode(h string) string {
	if h == "node1" {
		return "node2"
	}
	return "node1"
}

// loadavg reads the 1, 5 and 15 minute load averages.
func loadavg() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	for i, f := range strings.Fields(string(b)) {
		if i < 3 {
			out[i], _ = strconv.ParseFloat(f, 64)
		}
	}
	return out
}
