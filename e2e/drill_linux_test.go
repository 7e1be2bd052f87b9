package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/agentlock"
	"tandem/internal/drill"
	"tandem/internal/events"
	"tandem/internal/state"
	"tandem/internal/testbed"
)

// drillRun runs `tandem drill` on the client host (where the VIP is
// reachable) against host h's agent and returns its JSON result and exit
// status.
func (r *run) drillRun(h string, args ...string) (drill.Result, int) {
	r.t.Helper()
	args = append([]string{"drill", "--socket", r.c.Socket(h), "-c", r.c.ConfigPath, "--json"}, args...)
	cmd := r.bed.Command("client", r.bed.Binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("tandem %v: %v", args, err)
	}
	var res drill.Result
	if code == 2 { // bad usage: no result, the reason on stderr
		r.t.Logf("tandem %s → exit 2: %s", strings.Join(args[5:], " "), stderr.String())
		return res, code
	}
	if err := json.Unmarshal(out, &res); err != nil {
		r.t.Fatalf("tandem %v (exit %d): not a JSON result: %v\nstdout: %s\nstderr: %s", args, code, err, out, stderr.String())
	}
	r.t.Logf("tandem %s → exit %d, %s; stderr:\n%s", strings.Join(args[5:], " "), code, out, stderr.String())
	return res, code
}

// drillRecords returns host h's drill records written since t.
func (r *run) drillRecords(h string, since time.Time) []events.Event {
	r.t.Helper()
	evs, err := events.ReadFile(filepath.Join(r.c.StateDir(h), "events.jsonl"), events.Filter{Kinds: []events.Kind{events.Drill}, Since: since})
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

// holderAt reports the group's holder and epoch as the witness sees them.
func (r *run) holderAt(group string) (string, uint64) {
	r.t.Helper()
	s, err := r.c.Status(r.ctx, "witness")
	if err != nil {
		r.t.Fatal(err)
	}
	for _, g := range s.Groups {
		if g.Name == group {
			return g.Holder, g.Epoch
		}
	}
	r.t.Fatalf("no group %s", group)
	return "", 0
}

// A volume group on the real bed: the drill refuses while the standby is
// down or out of sync (and changes nothing), then switches to the standby
// and back, planned and by killing the active agent, checking the NBD
// export on the VIP answers on each side and recording every drill.
func TestDrill(t *testing.T) {
	if _, err := exec.LookPath("nbdcopy"); err != nil {
		t.Skip("nbdcopy not installed (Debian: libnbd-bin)")
	}
	spec := testbed.Spec{Groups: []testbed.GroupSpec{{Name: "db", Volume: "pg", VolumeSize: "16MiB"}}}
	r := newRun(t, spec)
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("db", "node1", 30*time.Second)
	r.waitReplica("witness", "node2", state.DiskUpToDate, "node2 in sync")
	check := fmt.Sprintf("tcp://%s:%d", testbed.VIPAddr(0), testbed.NBDPort)
	begin := time.Now()

	t.Run("refused while the standby is out of sync", func(t *testing.T) {
		volumeCLI := func(h string, args ...string) {
			t.Helper()
			args = append([]string{"volume", "--state-dir", r.c.StateDir(h)}, args...)
			if out, err := r.bed.Command(h, r.bed.Binary, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: tandem %v: %v\n%s", h, args, err, out)
			}
		}
		_, epoch := r.holderAt("db")
		// The replication link alone goes down: the cluster still records
		// node2 UpToDate (nothing was written), but node1 sees the link.
		volumeCLI("node1", "disconnect", "pg")
		res, code := r.drillRun("node1", "db", "--check", check)
		if code != 3 || res.Result != drill.Refused || !strings.Contains(strings.Join(res.Refusals, "\n"), "replication link is") {
			t.Fatalf("drill with the replication link down: exit %d, %+v", code, res)
		}
		// A write makes node2's replica Outdated in the cluster's record,
		// which the witness (no replica of its own) sees.
		data := filepath.Join(r.bed.Dir, "alone")
		os.WriteFile(data, make([]byte, 1<<20), 0o600)
		r.client("nbdcopy", "--flush", data, fmt.Sprintf("nbd://%s:%d/pg", testbed.VIPAddr(0), testbed.NBDPort))
		r.waitReplica("witness", "node2", state.DiskOutdated, "node2 recorded Outdated")
		res, code = r.drillRun("witness", "db")
		if code != 3 || !strings.Contains(strings.Join(res.Refusals, "\n"), "node2's replica is Outdated") {
			t.Fatalf("drill onto an Outdated replica: exit %d, %+v", code, res)
		}
		if h, e := r.holderAt("db"); h != "node1" || e != epoch {
			t.Fatalf("a refused drill changed the group: %s at epoch %d, was node1 at %d", h, e, epoch)
		}
		if recs := r.drillRecords("witness", begin); len(recs) != 1 || recs[0].Attrs["result"] != drill.Refused {
			t.Fatalf("the witness's drill records: %+v", recs)
		}
		volumeCLI("node1", "connect", "pg")
		r.waitReplica("witness", "node2", state.DiskUpToDate, "node2 resynced")
	})

	t.Run("refused while the standby is down", func(t *testing.T) {
		if _, err := r.c.KillAgent("node2"); err != nil {
			t.Fatal(err)
		}
		r.waitUntil(10*time.Second, "the witness sees node2 down", func() bool {
			s, err := r.c.Status(r.ctx, "witness")
			return err == nil && len(s.Nodes) > 1 && !s.Nodes[1].Up
		})
		res, code := r.drillRun("node1", "db")
		if code != 3 || !strings.Contains(strings.Join(res.Refusals, "\n"), "standby node2: down") {
			t.Fatalf("drill with node2 down: exit %d, %+v", code, res)
		}
		if h, _ := r.holderAt("db"); h != "node1" {
			t.Fatalf("a refused drill moved the group to %s", h)
		}
		if err := r.c.Start("node2"); err != nil {
			t.Fatal(err)
		}
		r.waitReplica("witness", "node2", state.DiskUpToDate, "node2 back in sync")
		// The record says UpToDate already (nothing was written): node1
		// must also hear node2 again, or the drill is refused as "standby
		// down" (CI: the planned drill ran before node1 saw node2 up).
		r.waitUntil(10*time.Second, "node1 hears node2 again", func() bool {
			s, err := r.c.Status(r.ctx, "node1")
			if err != nil {
				return false
			}
			for _, n := range s.Nodes {
				if n.Name == "node2" {
					return n.Up
				}
			}
			return false
		})
		// node2 must also be seen connected by node1 before a drill passes.
		r.waitUntil(30*time.Second, "node1's replication link to node2", func() bool {
			s, err := r.c.Status(r.ctx, "node1")
			return err == nil && len(s.Volumes) > 0 && s.Volumes[0].Local != nil && s.Volumes[0].Local.Connection == "Connected" &&
				s.Volumes[0].Local.Sync == "" && s.Volumes[0].Local.PeerDisk == state.DiskUpToDate
		})
	})

	t.Run("planned", func(t *testing.T) {
		since := time.Now()
		res, code := r.drillRun("node1", "db", "--check", check, "--hold", "1s")
		if code != 0 || res.Result != drill.Pass {
			t.Fatalf("planned drill: exit %d, %+v", code, res)
		}
		if res.From != "node1" || res.To != "node2" || res.SwitchMs <= 0 || res.SwitchBackMs <= 0 || res.HoldMs < 1000 || !res.Recorded {
			t.Fatalf("planned drill result: %+v", res)
		}
		t.Logf("planned drill: switch %d ms, verify %d ms, switch back %d ms, verify back %d ms", res.SwitchMs, res.VerifyMs, res.SwitchBackMs, res.VerifyBackMs)
		recs := r.drillRecords("node1", since)
		if len(recs) != 1 || recs[0].Attrs["result"] != drill.Pass || recs[0].Attrs["switch_ms"] == nil || recs[0].Attrs["kind"] != "planned" {
			t.Fatalf("node1's drill records: %+v", recs)
		}
		s, err := r.c.Status(r.ctx, "witness")
		if err != nil {
			t.Fatal(err)
		}
		if g := s.Groups[0]; g.Holder != "node1" || g.Pinned != "" {
			t.Fatalf("after the drill: holder %s, pinned %q (want node1, unpinned as before)", g.Holder, g.Pinned)
		}
	})

	t.Run("unplanned", func(t *testing.T) {
		res, code := r.drillRun("node2", "db", "--unplanned")
		if code != 2 {
			t.Fatalf("--unplanned without --yes: exit %d, %+v", code, res)
		}
		// The drill kills node1's agent; the bed has no systemd to start
		// it again, so the test does, once it is gone.
		restarted := make(chan error, 1)
		go func() {
			if err := r.waitGone("node1", 60*time.Second); err != nil {
				restarted <- err
				return
			}
			// The bed did not kill it: its fault log learns when the
			// agent was, from the agent's last words.
			killed, err := r.c.Events("node1")
			if err != nil {
				restarted <- err
				return
			}
			at := time.Now()
			for _, e := range killed {
				if e.Kind == events.AdminAction && strings.Contains(e.Message, "unplanned failover drill") {
					at = e.Time
				}
			}
			r.bed.Record(testbed.Fault{Kind: testbed.FaultKillAgent, Host: "node1", At: at, Detail: "tandem drill --unplanned"})
			// systemd's RestartSec=1 (contrib/systemd/tandem.service).
			r.sleep(time.Until(at.Add(time.Second)))
			restarted <- r.restartAgent("node1", 30*time.Second)
		}()
		since := time.Now()
		res, code = r.drillRun("node2", "db", "--unplanned", "--yes", "--active-socket", r.c.Socket("node1"), "--check", check, "--rejoin-timeout", "90s")
		if err := <-restarted; err != nil {
			t.Fatal(err)
		}
		if code != 0 || res.Result != drill.Pass || res.Kind != "unplanned" || res.Takeover["detect_ms"] == nil {
			t.Fatalf("unplanned drill: exit %d, %+v", code, res)
		}
		t.Logf("unplanned drill: switch %d ms (takeover %v), rejoin %d ms, switch back %d ms", res.SwitchMs, res.Takeover, res.RejoinMs, res.SwitchBackMs)
		if recs := r.drillRecords("node2", since); len(recs) != 1 || recs[0].Attrs["kind"] != "unplanned" || recs[0].Attrs["takeover_detect_ms"] == nil {
			t.Fatalf("node2's drill records: %+v", recs)
		}
		if h, _ := r.holderAt("db"); h != "node1" {
			t.Fatalf("after the unplanned drill the group runs on %s", h)
		}
	})

	// The audit report over the three voters' logs tells the same story.
	t.Run("report", func(t *testing.T) {
		args := []string{"report", "-c", r.c.ConfigPath, "--since", "1h", "--format", "json"}
		for _, h := range testbed.Voters {
			args = append(args, "--file", filepath.Join(r.c.StateDir(h), "events.jsonl"))
		}
		out, err := exec.Command(r.bed.Binary, args...).Output()
		if err != nil {
			t.Fatalf("tandem %v: %v", args, err)
		}
		var rep struct {
			Sections []struct {
				ID, Status, Summary string
				Findings            []struct{ Status, Text string }
				Table               *struct{ Rows [][]string }
			}
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		sec := map[string]string{}
		rows := map[string][][]string{}
		for _, s := range rep.Sections {
			sec[s.ID] = s.Status + ": " + s.Summary
			for _, f := range s.Findings {
				sec[s.ID] += "; " + f.Status + ": " + f.Text
			}
			if s.Table != nil {
				rows[s.ID] = s.Table.Rows
			}
		}
		t.Logf("report: %v", sec)
		if !strings.Contains(sec["drills"], "2 of 5 drills passed") {
			t.Errorf("drills: %s", sec["drills"])
		}
		failover := false
		for _, row := range rows["failovers"] {
			failover = failover || row[2] == "failover (drill)" && row[3] == "node1" && row[4] == "node2" && row[5] != ""
		}
		if !failover {
			t.Errorf("the unplanned drill's failover is not in the report: %v", rows["failovers"])
		}
		outdated := false
		for _, row := range rows["storage"] {
			outdated = outdated || row[2] == "pg/node2" && row[3] == "Outdated"
		}
		if !outdated {
			t.Errorf("node2's Outdated replica is not in the report: %s %v", sec["storage"], rows["storage"])
		}
		if !strings.HasPrefix(sec["retention"], "pass") {
			t.Errorf("retention: %s", sec["retention"])
		}
		if strings.HasPrefix(sec["storage"], "fail") {
			t.Errorf("storage: every replica is back in sync, but %s", sec["storage"])
		}
	})
}

// waitGone waits until host h's agent has exited.
func (r *run) waitGone(h string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := r.c.WaitExited(r.ctx, h)
		if err == nil || time.Now().After(deadline) || r.ctx.Err() != nil {
			return err
		}
	}
}

// restartAgent starts host h's agent again after it was killed, once the
// dead agent's lock is free: the kernel drops it only when the process is
// wholly gone, which can be a moment after it left the namespace's
// process list (an agent started before then would exit at once).
func (r *run) restartAgent(h string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := agentlock.Acquire(r.c.StateDir(h), h)
		if err == nil {
			l.Release()
			return r.c.Start(h)
		}
		if !agentlock.IsHeld(err) || time.Now().After(deadline) {
			return fmt.Errorf("restart %s: %w", h, err)
		}
		r.sleep(10 * time.Millisecond)
	}
}
