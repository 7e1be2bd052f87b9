package testbed

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// FaultKind names a fault (or its healing) in the bed's fault log.
type FaultKind string

// The faults the bed injects.
const (
	FaultKill        FaultKind = "kill"         // SIGKILL every process of a host
	FaultFreeze      FaultKind = "freeze"       // SIGSTOP every process of a host
	FaultThaw        FaultKind = "thaw"         // SIGCONT them
	FaultStart       FaultKind = "start"        // a daemon (re)started on a host
	FaultStop        FaultKind = "stop"         // a daemon stopped cleanly (SIGTERM)
	FaultCutOff      FaultKind = "cutoff"       // nftables drops between a host and its peers
	FaultIsolate     FaultKind = "isolate"      // every link of a host down at the switch
	FaultPartition   FaultKind = "partition"    // nftables drops between two hosts, both ways
	FaultOneWay      FaultKind = "oneway"       // nftables drops from Host to Peer only
	FaultLinkDown    FaultKind = "link_down"    // one link down at the switch
	FaultLinkUp      FaultKind = "link_up"      // back up
	FaultSlow        FaultKind = "slow"         // tbf on a host's link
	FaultKillService FaultKind = "kill_service" // SIGKILL a managed service
	FaultKillAgent   FaultKind = "kill_agent"   // SIGKILL the tandem agent only (its services run on)
	// FaultBlockHeartbeats drops the heartbeats a host receives: its lease
	// lapses while the others still hear it.
	FaultBlockHeartbeats FaultKind = "block_heartbeats"
	// FaultReplicationDown drops a volume's replication link between the
	// data nodes, nothing else.
	FaultReplicationDown FaultKind = "replication_down"
	FaultHeal            FaultKind = "heal"  // every drop, link and qdisc fault undone
	FaultAdmin           FaultKind = "admin" // an operator's action (Detail says which)
)

// Fault is one entry of the bed's fault log.
type Fault struct {
	At time.Time `json:"at"`
	// Done is when a fault that takes a while to apply (drops in several
	// namespaces) was complete; zero when it took effect at At.
	Done   time.Time `json:"done,omitzero"`
	Kind   FaultKind `json:"kind"`
	Host   string    `json:"host"`
	Peer   string    `json:"peer,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

func (f Fault) String() string {
	s := f.At.Format("15:04:05.000") + " " + string(f.Kind) + " " + f.Host
	if f.Peer != "" {
		s += "→" + f.Peer
	}
	if f.Detail != "" {
		s += " (" + f.Detail + ")"
	}
	if f.Done.After(f.At) {
		s += fmt.Sprintf(" [complete +%.1fms]", float64(f.Done.Sub(f.At).Microseconds())/1000)
	}
	return s
}

// Incapacity is a stretch in which a host could not renew a lease: it was
// dead, frozen or cut off from every other voter. A lease it held ends at
// the latest one lease duration after From.
type Incapacity struct {
	Host     string
	From, To time.Time // To zero: until the end of the run
	Why      FaultKind
}

// Incapacities derives from a fault log when each host could not act:
// from a kill to the next start, from a freeze to the thaw, from a cut-off
// or isolation to the next heal.
func Incapacities(log []Fault) []Incapacity {
	sorted := append([]Fault(nil), log...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	open := map[string]*Incapacity{}
	var out []Incapacity
	closeAll := func(host string, at time.Time, kinds ...FaultKind) {
		if in := open[host]; in != nil {
			for _, k := range kinds {
				if in.Why == k {
					in.To = at
					out = append(out, *in)
					delete(open, host)
					return
				}
			}
		}
	}
	for _, f := range sorted {
		switch f.Kind {
		case FaultKill, FaultKillAgent, FaultFreeze, FaultCutOff, FaultIsolate:
			if open[f.Host] == nil {
				from := f.At
				if f.Done.After(from) {
					from = f.Done // the host could act until the fault was complete
				}
				// (A killed agent is judged like a cut-off host: its
				// services and its kernel answer for the VIP until the
				// guard's allowance, within its lease, runs out.)
				open[f.Host] = &Incapacity{Host: f.Host, From: from, Why: f.Kind}
			}
		case FaultStart:
			closeAll(f.Host, f.At, FaultKill, FaultKillAgent)
		case FaultThaw:
			closeAll(f.Host, f.At, FaultFreeze)
		case FaultHeal:
			for h := range open {
				closeAll(h, f.At, FaultCutOff, FaultIsolate)
			}
		}
	}
	var hosts []string
	for h := range open {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		out = append(out, *open[h])
	}
	return out
}

// FaultLog renders a fault log, one per line.
func FaultLog(log []Fault) string {
	var b strings.Builder
	for _, f := range log {
		fmt.Fprintln(&b, f.String())
	}
	return b.String()
}
