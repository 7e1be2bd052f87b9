package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/config"
	"tandem/internal/replication"
	"tandem/internal/state"
	"tandem/internal/volume"
	"tandem/internal/volumecli"
)

// nodeVolume is this node's replica of one configured volume, run by the
// agent from start to stop (a secondary until its group's volume resource
// promotes it).
type nodeVolume struct {
	name, group, peer string
	rep               *volumecli.Replica
	// mu serializes the proposals about this volume's replicas (the
	// holder's reports and the fencer's outdate), so they commit in the
	// order they were decided and the newest is the truth: a report of
	// the peer UpToDate decided before a link loss cannot commit after
	// the outdate that loss caused.
	mu   sync.Mutex
	poke chan struct{}
	// attach is how this node's filesystem resource on the volume attaches
	// it (filesystem.ModeKernelNBD, ModeNBDFuse, "" when it cannot):
	// status shows it.
	attach atomic.Pointer[string]
	// deposedAt is the newest epoch at which the state placed the group
	// on another node that the replica was told of (deposeVolumes).
	deposedAt atomic.Uint64
}

// volumeGroup returns the group whose volume resource promotes volume.
func volumeGroup(cfg *config.Config, volume string) string {
	for _, g := range cfg.Groups {
		for _, r := range g.Resources {
			if r.Volume != nil && r.Volume.Name == volume {
				return g.Name
			}
		}
	}
	return ""
}

// startVolumes starts this node's replicas of every configured volume.
func (n *Node) startVolumes() error {
	n.volumes = map[string]*nodeVolume{}
	for _, cv := range n.cfg.Volumes {
		if cv.Replica(n.self) == nil {
			continue
		}
		v := &nodeVolume{name: cv.Name, group: volumeGroup(n.cfg, cv.Name), poke: make(chan struct{}, 1)}
		for _, r := range cv.Replicas {
			if r.Node != n.self {
				v.peer = r.Node
			}
		}
		rep, err := volumecli.StartReplica(volumecli.ReplicaOptions{
			Config: n.cfg, Volume: cv.Name, Self: n.self, Fencer: raftFencer{n, v}, Logger: n.log,
			Sink: n.publish, OnEvent: func(volume.Event) { v.nudge() },
		})
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		v.rep = rep
		n.volumes[cv.Name] = v
	}
	return nil
}

// StorageGatherer gathers the metrics of this node's replicas, which
// each keep their own registry (served also on the volume's control
// socket): the engines' tandem_volume_*, the replication links', the RAID
// arrays they keep their data on and the primaries' NBD exports'. The
// agent serves them on /metrics beside the Registerer's.
func (n *Node) StorageGatherer() prometheus.Gatherer {
	var gs prometheus.Gatherers
	for _, v := range n.volumes {
		gs = append(gs, v.rep.Gatherer())
	}
	return gs
}

// deposeVolumes tells each replica whose group the state placed on the
// other node of that epoch: a primary of an older epoch here steps down
// at once (replication.Machine.Depose), its open writes fail, and the
// group's stop does not wait on them until the link breaks. Off the
// apply path: the volume's step may wait for its lock.
func (n *Node) deposeVolumes(st *state.State) {
	for _, v := range n.volumes {
		g := st.Groups[v.group]
		if g == nil || g.Holder == "" || g.Holder == n.self {
			continue
		}
		if old := v.deposedAt.Load(); g.Epoch > old && v.deposedAt.CompareAndSwap(old, g.Epoch) {
			go v.rep.Depose(g.Epoch)
		}
	}
}

func (v *nodeVolume) nudge() {
	select {
	case v.poke <- struct{}{}:
	default:
	}
}

// closeVolumes stops the replicas, after the groups stopped.
func (n *Node) closeVolumes() {
	for _, v := range n.volumes {
		if err := v.rep.Close(); err != nil {
			n.log.Warn("volume: close", "volume", v.name, "err", err)
		}
	}
}

// raftFencer is a volume's PeerFencer: it records the peer's replica
// Outdated in the replicated state, which only the group's holder at its
// current epoch may do (a deposed primary's request is refused, so it
// cannot outdate the replica the cluster just promoted). Without a quorum
// the proposal fails, and the primary's I/O stays suspended.
type raftFencer struct {
	n *Node
	v *nodeVolume
}

func (f raftFencer) OutdatePeer(ctx context.Context, _ replication.VolumeID, peer string, epoch replication.Epoch) error {
	if f.n.cons == nil {
		return fmt.Errorf("%w: the agent is starting", replication.ErrFenceRefused)
	}
	f.v.mu.Lock()
	defer f.v.mu.Unlock()
	err := f.n.cons.Propose(ctx, state.Command{Op: state.OpReplica, Time: time.Now(), Group: f.v.group, Node: f.n.self,
		Epoch: uint64(epoch), Volume: f.v.name, Replica: peer, Disk: state.DiskOutdated, Reason: "the primary lost its peer"})
	if state.IsStaleEpoch(err) {
		return fmt.Errorf("%w: %v", replication.ErrFenceRefused, err)
	}
	return err
}

// volumeRecord is the cluster's record of the replicas, for the volume
// resource.
type volumeRecord struct{ n *Node }

func (c volumeRecord) Disk(volume, node string) (string, bool) {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	if r := c.n.st.ReplicaOf(volume, node); r != nil {
		return r.Disk, true
	}
	return "", false
}

func (c volumeRecord) Forced(volume, node string) bool {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	r := c.n.st.ReplicaOf(volume, node)
	return r != nil && r.Forced
}

func (c volumeRecord) Reported(volume string) {
	if v := c.n.volumes[volume]; v != nil {
		v.nudge()
	}
}

// reportVolumes keeps the cluster's record of each volume's replicas true
// while this node is the primary: its own replica UpToDate, the peer's
// UpToDate when connected and in sync, Inconsistent while it is a resync
// target, Outdated when it is not connected and misses writes (in async
// mode the engine writes on without fencing; the record catches up here).
// It looks on every engine event and every second.
func (n *Node) reportVolumes(ctx context.Context) {
	defer n.wg.Done()
	var wg sync.WaitGroup
	for _, v := range n.volumes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				n.reportVolume(ctx, v)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-v.poke:
				}
			}
		}()
	}
	wg.Wait()
}

// replicaReports says what the primary knows of both replicas now.
func replicaReports(self, peer string, s volume.Status) map[string]string {
	out := map[string]string{}
	if s.Role != replication.Primary.String() {
		return out
	}
	switch s.Disk {
	case "UpToDate":
		out[self] = state.DiskUpToDate
	case "Diskless", "Failed", "Inconsistent":
		out[self] = state.DiskInconsistent
	}
	switch {
	case s.Connection == "Connected" && s.PeerDisk == "UpToDate" && s.Sync == "" && s.OutOfSync == 0:
		out[peer] = state.DiskUpToDate
	case s.Connection == "Connected" && s.PeerDisk == "Inconsistent":
		out[peer] = state.DiskInconsistent
	case s.Connection != "Connected" && s.OutOfSync > 0:
		out[peer] = state.DiskOutdated
	}
	return out
}

// holderlessReports says what a secondary may report while its group has
// no holder: both replicas UpToDate when they are connected, both
// UpToDate and in sync, and neither is primary (state.applyReplica).
func holderlessReports(self, peer string, s volume.Status) map[string]string {
	if s.Role != replication.Secondary.String() || s.PeerRole == replication.Primary.String() ||
		s.Disk != "UpToDate" || s.Connection != "Connected" || s.PeerDisk != "UpToDate" || s.Sync != "" || s.OutOfSync != 0 {
		return nil
	}
	return map[string]string{self: state.DiskUpToDate, peer: state.DiskUpToDate}
}

func (n *Node) reportVolume(ctx context.Context, v *nodeVolume) {
	s := v.rep.Status()
	if v.group == "" {
		return
	}
	if s.Role != replication.Primary.String() {
		n.reportHolderless(ctx, v)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s = v.rep.Status() // again, under the lock: the fencer may have run
	for node, disk := range replicaReports(n.self, v.peer, s) {
		n.mu.Lock()
		g, known := n.st.Groups[v.group], n.st.ReplicaOf(v.name, node)
		n.mu.Unlock()
		if g == nil || g.Holder != n.self || g.Epoch != uint64(s.Epoch) {
			return // not (yet) the holder at this epoch: nothing to say
		}
		if known != nil && known.Disk == disk && known.Epoch == g.Epoch {
			continue
		}
		if known != nil && known.Forced && known.Epoch == g.Epoch && node != n.self && disk != state.DiskUpToDate {
			continue // an admin forced it UpToDate at this epoch: the state refuses ours
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.cons.Propose(pctx, state.Command{Op: state.OpReplica, Time: time.Now(), Group: v.group, Node: n.self,
			Epoch: g.Epoch, Volume: v.name, Replica: node, Disk: disk})
		cancel()
		if err != nil && !state.IsStaleEpoch(err) {
			n.log.Warn("volume: replica state not recorded; retrying", "volume", v.name, "replica", node, "disk", disk, "err", err)
		}
	}
}

// reportHolderless records both replicas UpToDate while the group has no
// holder and they are connected and in sync: nobody else could (only a
// holder reports), and a replica outdated before the group stopped would
// stay recorded stale with its data current, the group running nowhere
// once its last node is banned (storage seed 20092).
func (n *Node) reportHolderless(ctx context.Context, v *nodeVolume) {
	n.mu.Lock()
	g := n.st.Groups[v.group]
	var epoch uint64
	holder, stale := "", false
	if g != nil {
		epoch, holder = g.Epoch, g.Holder
		for _, node := range []string{n.self, v.peer} {
			r := n.st.ReplicaOf(v.name, node)
			stale = stale || r != nil && r.Disk != state.DiskUpToDate
		}
	}
	n.mu.Unlock()
	if g == nil || holder != "" || !stale {
		return
	}
	for node, disk := range holderlessReports(n.self, v.peer, v.rep.Status()) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.cons.Propose(pctx, state.Command{Op: state.OpReplica, Time: time.Now(), Group: v.group, Node: n.self,
			Epoch: epoch, Volume: v.name, Replica: node, Disk: disk, Reason: "in sync with no holder"})
		cancel()
		if err != nil && !state.IsStaleEpoch(err) {
			n.log.Warn("volume: replica state not recorded; retrying", "volume", v.name, "replica", node, "disk", disk, "err", err)
		}
	}
}
