// Package replica owns the resource agents of replicated volumes in a
// group: Volume promotes this node's replica at the group's epoch on
// start and demotes it on stop; Export serves the primary replica over NBD
// on the group's VIP. The replication engine and the cluster's record of
// each replica's disk state reach them through small interfaces, so the
// agents are tested with fakes and the node wires the real ones.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd"
	"tandem/internal/replication"
	"tandem/internal/resource"
	"tandem/internal/volume"
)

// Engine is this node's running replica of one volume.
type Engine interface {
	Name() string
	Promote(epoch uint64, force bool) error
	Demote() error
	Status() volume.Status
	Device() blockdev.Device
	// Disconnect drops the link to the peer until Connect.
	Disconnect() error
	Connect() error
}

// Cluster is what the replicated state says of a volume's replicas.
type Cluster interface {
	// Disk returns the disk state the cluster last recorded for node's
	// replica of volume, and whether any was recorded.
	Disk(volume, node string) (disk string, known bool)
	// Forced reports whether an admin declared node's replica UpToDate
	// (tandem failover --force): its promotion is forced.
	Forced(volume, node string) bool
	// Reported tells the node the replica was promoted, so the holder
	// records its disk states at once.
	Reported(volume string)
}

// Volume is the `volume` resource.
type Volume struct {
	eng     Engine
	cluster Cluster
	self    string
	peer    string
	log     *slog.Logger
	// retry is how often a promotion refused as busy (a handshake with the
	// peer under way, the last demotion not finished) is tried again.
	retry time.Duration
}

// NewVolume returns the volume resource of eng on node self, whose peer
// holds the other replica.
func NewVolume(eng Engine, cluster Cluster, self, peer string, log *slog.Logger) *Volume {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Volume{eng: eng, cluster: cluster, self: self, peer: peer, log: log, retry: 50 * time.Millisecond}
}

// Start promotes the replica at the group's epoch. It refuses a replica
// the cluster recorded as not UpToDate (Hard: the group must go where the
// data is). A new volume, no replica ever recorded and neither side
// UpToDate, is promoted with force: its first primary's data is synced to
// the peer in full.
func (v *Volume) Start(ctx context.Context) error {
	epoch := resource.EpochOf(ctx)
	if epoch == 0 {
		return resource.Failf(resource.Fatal, "volume %s: started without the group's epoch", v.eng.Name())
	}
	name := v.eng.Name()
	if disk, known := v.cluster.Disk(name, v.self); known && disk != "UpToDate" {
		return resource.Failf(resource.Hard, "volume %s: this node's replica is %s in the cluster's record: promoting it would serve stale data", name, disk)
	}
	st := v.eng.Status()
	_, mine := v.cluster.Disk(name, v.self)
	_, theirs := v.cluster.Disk(name, v.peer)
	force := !mine && !theirs && st.Disk == "Inconsistent" && st.PeerDisk != "UpToDate"
	if force {
		v.log.Warn("volume: a new volume's first promotion: its data is synced to the peer in full", "epoch", epoch)
	}
	if v.cluster.Forced(name, v.self) && st.Disk != "UpToDate" {
		force = true
		v.log.Warn("volume: promoted by force (tandem failover --force): writes this replica lacks are lost", "epoch", epoch, "disk", st.Disk)
	}
	waited := false
	for {
		err := v.eng.Promote(epoch, force)
		if err == nil {
			v.cluster.Reported(name)
			return nil
		}
		switch {
		case errors.Is(err, replication.ErrBusy):
		case errors.Is(err, replication.ErrPeerPrimary):
			// The cluster gave the group to this node at a newer epoch, so
			// the peer's primary is deposed: frozen or cut off with the
			// link not yet timed out (5 s), or a handover whose demotion
			// has not reached the link yet. Its frames carry the older
			// epoch and are refused, and a sync primary that lost its
			// peer acknowledges nothing until raft outdates it, which
			// raft refuses to a deposed holder: drop the link, promote,
			// connect again (the peer resyncs from here when it is back).
			v.log.Warn("volume: the deposed peer still shows primary on the link: dropping the link to promote", "epoch", epoch)
			if derr := v.eng.Disconnect(); derr != nil {
				return fmt.Errorf("volume %s: drop the link to the deposed peer: %w", name, derr)
			}
			perr := v.eng.Promote(epoch, force)
			if cerr := v.eng.Connect(); cerr != nil {
				v.log.Warn("volume: reconnect to the peer", "err", cerr)
			}
			if perr == nil {
				v.cluster.Reported(name)
				return nil
			}
			err = perr
			if !errors.Is(err, replication.ErrBusy) && !errors.Is(err, replication.ErrResyncTarget) {
				return fmt.Errorf("volume %s: promote at epoch %d: %w", name, epoch, err)
			}
		case errors.Is(err, replication.ErrResyncTarget):
			// Recorded UpToDate, this replica became a resync target after
			// the placement: the crashed primary came back and sends the
			// regions its activity log held. That ends on its own while
			// the link holds (else the promotion fails as Inconsistent):
			// wait, within the start's timeout, rather than ban a node
			// whose data is a moment from whole (storage seed 45021).
			if !waited {
				v.log.Info("volume: a resync target: waiting for the resync to end to promote", "epoch", epoch)
				waited = true
			}
		case errors.Is(err, replication.ErrNotUpToDate), errors.Is(err, replication.ErrNoData):
			return resource.Failf(resource.Hard, "volume %s: %v", name, err)
		default:
			return fmt.Errorf("volume %s: promote at epoch %d: %w", name, epoch, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("volume %s: promote at epoch %d: %w (last: %v)", name, epoch, ctx.Err(), err)
		case <-time.After(v.retry):
		}
	}
}

// Stop demotes the replica; a secondary is stopped already.
func (v *Volume) Stop(ctx context.Context) error {
	if err := v.eng.Demote(); err != nil {
		return fmt.Errorf("volume %s: demote: %w", v.eng.Name(), err)
	}
	return nil
}

// Monitor: a primary is running while it has the data, on its own disk
// or through its peer; a secondary is not running.
func (v *Volume) Monitor(ctx context.Context) error {
	st := v.eng.Status()
	switch {
	case st.Role != "Primary":
		return resource.ErrNotRunning
	case st.Disk == "Diskless" && st.Connection != "Connected":
		return resource.Failf(resource.Hard, "volume %s: the local disk is detached and the peer is not connected: no data", v.eng.Name())
	}
	return nil
}

// Export is the `nbd_export` resource: the primary replica served over
// NBD at a fixed address (the group's VIP).
type Export struct {
	eng  Engine
	addr netip.AddrPort
	log  *slog.Logger

	mu  sync.Mutex
	srv *nbd.Server
	ln  net.Listener
}

// NewExport returns the nbd_export resource of eng at addr.
func NewExport(eng Engine, addr netip.AddrPort, log *slog.Logger) *Export {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Export{eng: eng, addr: addr, log: log}
}

func (e *Export) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return nil
	}
	if st := e.eng.Status(); st.Role != "Primary" {
		return fmt.Errorf("nbd export of volume %s: the replica is %s, not primary (the volume resource comes first)", e.eng.Name(), st.Role)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.addr.String())
	if err != nil {
		return fmt.Errorf("nbd export of volume %s: %w", e.eng.Name(), err)
	}
	name := e.eng.Name()
	e.srv = nbd.NewServer(e.log, nbd.Export{Name: name, Description: "tandem replicated volume " + name, Device: e.eng.Device(), MultiConn: true})
	e.ln = ln
	go e.srv.Serve(ln)
	e.log.Info("nbd export started", "listen", e.addr, "export", name)
	return nil
}

// Stop closes the export: no new connection or request, and the replies
// of requests already read are sent. A request the volume holds while
// its I/O is suspended (waiting for the peer to be outdated) may never
// finish at this epoch: Stop does not wait for those, or a deposed
// primary would keep its export, and its group, up until the fencer's
// next retry (storage seed 20182: 1 s past the lease). The volume
// resource's stop, next, demotes the replica, which fails them; their
// clients get an error, never an acknowledgement, since only a fence at
// the current epoch would let them complete.
func (e *Export) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv == nil {
		return nil
	}
	srv := e.srv
	e.srv, e.ln = nil, nil
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	t := time.NewTicker(exportStopPoll)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			e.log.Info("nbd export stopped", "listen", e.addr)
			return err
		case <-ctx.Done():
			return fmt.Errorf("nbd export of volume %s: requests still in flight: %w", e.eng.Name(), ctx.Err())
		case <-t.C:
			if why := e.eng.Status().Suspended; why != "" {
				e.log.Warn("nbd export stopped; requests waiting on the suspended volume fail when it is demoted",
					"listen", e.addr, "suspended", why)
				return nil
			}
		}
	}
}

// exportStopPoll is how often a stopping export looks whether the volume
// holding its last requests is suspended.
const exportStopPoll = 10 * time.Millisecond

// Monitor: running while it serves and the replica is primary.
func (e *Export) Monitor(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.srv == nil:
		return resource.ErrNotRunning
	case e.eng.Status().Role != "Primary":
		return resource.Failf(resource.Hard, "nbd export of volume %s: the replica is no longer primary", e.eng.Name())
	}
	return nil
}
