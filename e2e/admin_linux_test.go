package e2e

import (
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// Planned switchover — CTS has no admin move test; `crm_resource --move`
// is what Pacemaker users run. tandem failover moves the group: the old
// node stops it (VIP last) and releases its lease, the new one starts it
// at once. The client's gap must stay within 150 ms; then it moves back.
func TestPlannedSwitchover(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	for _, to := range []string{"node2", "node1"} {
		f := r.bed.Mark("failover", "web", to)
		if got, err := r.c.Client("witness").Failover(r.ctx, "web", to); err != nil || got != to {
			t.Fatalf("failover to %s: %q, %v", to, got, err)
		}
		s := r.waitServed("web", to, f.At, 5*time.Second)
		o := r.outage("web", f, s.Done.Add(time.Millisecond))
		if o.Ms > float64(maxSwitchover.Milliseconds()) {
			t.Errorf("switchover to %s: the client waited %.0f ms, more than %v", to, o.Ms, maxSwitchover)
		}
		r.watchQuiet("web", to, s.Done, minTenure+100*time.Millisecond, 100*time.Millisecond)
	}
}

// Standby mode — CTS StandbyTest: node1 in standby gives its group to
// node2 (a planned move); out of standby (failback manual) the group
// stays on node2.
func TestStandby(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	f := r.bed.Mark("standby on", "node1", "")
	if err := r.c.Client("node2").Standby(r.ctx, "node1", true); err != nil {
		t.Fatal(err)
	}
	s := r.waitServed("web", "node2", f.At, 5*time.Second)
	o := r.outage("web", f, s.Done.Add(time.Millisecond))
	if o.Ms > float64(maxSwitchover.Milliseconds()) {
		t.Errorf("standby move: the client waited %.0f ms, more than %v", o.Ms, maxSwitchover)
	}
	r.watchQuiet("web", "node2", s.Done, 500*time.Millisecond, 100*time.Millisecond)
	off := r.bed.Mark("standby off", "node1", "")
	if err := r.c.Client("node2").Standby(r.ctx, "node1", false); err != nil {
		t.Fatal(err)
	}
	r.watchQuiet("web", "node2", off.At, settle+300*time.Millisecond, 100*time.Millisecond)
}

// Maintenance mode — CTS MaintenanceMode: with maintenance on, the
// resources stay up and nothing is managed: a service that dies is not
// restarted, nothing moves, the VIP stays where it is. With maintenance
// off, the cluster looks again and restarts the service.
func TestMaintenance(t *testing.T) {
	r := startCluster(t, testbed.Spec{})
	web := r.group("web")
	on := r.bed.Mark("maintenance on", "", "")
	if err := r.c.Client("node1").Maintenance(r.ctx, "", true); err != nil {
		t.Fatal(err)
	}
	if err := r.c.WaitMaintenance(r.ctx, "node1", true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Resources stay up while unmanaged, well past a lease.
	r.watchQuiet("web", "node1", on.At, 3*lease+200*time.Millisecond, 100*time.Millisecond)
	kill, err := r.bed.KillService("node1", testbed.ServiceMatch(web))
	if err != nil {
		t.Fatal(err)
	}
	r.sleep(time.Second) // several monitor intervals (200 ms)
	if r.bed.ServiceRunning("node1", testbed.ServiceMatch(web)) {
		t.Errorf("the service was restarted while in maintenance")
	}
	if n := r.probes["web"].Timeline().AnswersFrom("node2", kill.At, time.Now()); n > 0 {
		t.Errorf("node2 answered %d probes: the group moved while in maintenance", n)
	}
	if evs := r.eventsSince(kill.At, events.ResStart, events.Placement, events.GroupStarted); len(evs) > 0 {
		t.Errorf("the cluster acted while in maintenance: %v", evs)
	}
	if mac := r.arpOwner("web", time.Now().Add(-200*time.Millisecond)); mac != "node1" {
		t.Errorf("the VIP is answered by %q while in maintenance, want node1 (it must stay up)", mac)
	}
	off := r.bed.Mark("maintenance off", "", "")
	if err := r.c.Client("node1").Maintenance(r.ctx, "", false); err != nil {
		t.Fatal(err)
	}
	r.waitEvent("node1", off.At, 5*time.Second, testbed.Kind(events.ResStart, "web"), "the service recovered after maintenance")
	r.waitServed("web", "", off.At, 5*time.Second)
}

// eventsSince returns the events of the given kinds any voter logged
// since t.
func (r *run) eventsSince(t time.Time, kinds ...events.Kind) []string {
	var out []string
	for _, h := range testbed.Voters {
		evs, _ := r.c.Events(h)
		for _, e := range evs {
			for _, k := range kinds {
				if e.Kind == k && !e.Time.Before(t) {
					out = append(out, h+": "+string(e.Kind)+" "+e.Subject+" "+e.Message)
				}
			}
		}
	}
	return out
}

// arpOwner names the node whose MAC answered the client's last ARP request
// for group's VIP after since ("" when none answered, "two" when two did).
func (r *run) arpOwner(group string, since time.Time) string {
	owner := ""
	for _, a := range r.probes[group].Timeline().ARPs {
		if a.At.Before(since) {
			continue
		}
		switch len(a.MACs) {
		case 0:
			owner = ""
		case 1:
			owner = r.bed.NodeOfMAC(a.MACs[0])
		default:
			owner = "two"
		}
	}
	return owner
}
