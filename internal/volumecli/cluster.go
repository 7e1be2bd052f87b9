package volumecli

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/blockdev"
	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/keyfile"
	"tandem/internal/replication"
	"tandem/internal/volume"
	"tandem/internal/volume/meta"
)

// ReplicaOptions run this node's replica of a configured volume inside the
// cluster agent (issue 12): the same daemon as `tandem volume up`, with
// the cluster's fencer, the agent's audit log, and its role changed only
// by the agent (the group's volume resource).
type ReplicaOptions struct {
	Config *config.Config
	Volume string // a name in Config.Volumes
	Self   string
	// Fencer outdates the peer through the cluster (raft).
	Fencer replication.PeerFencer
	Logger *slog.Logger
	// Sink receives the volume's events for the agent's audit log.
	Sink func(events.Event)
	// OnEvent sees every engine event, on the engine's loop: it must not
	// block or call back into the replica.
	OnEvent func(volume.Event)
}

// Replica is a running replica of a configured volume.
type Replica struct{ d *daemon }

// VolumeUUID is a configured volume's UUID: derived from the cluster key,
// the cluster's name and the volume's, so both nodes agree without a word
// and a replica of another cluster's volume is refused.
func VolumeUUID(key []byte, cluster, name string) replication.VolumeID {
	h := sha256.New()
	h.Write([]byte("tandem volume uuid\x00"))
	h.Write(key)
	h.Write([]byte("\x00" + cluster + "\x00" + name))
	var id replication.VolumeID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x80 // RFC 9562 version 8 (custom), variant 10
	id[8] = id[8]&0x3f | 0x80
	return id
}

// NBDSocket is where a configured volume's primary serves NBD on this
// node, for the filesystem resource: a unix socket in the state dir.
func NBDSocket(stateDir, name string) string {
	return filepath.Join(volumeDir(stateDir), name+".nbd")
}

// StartReplica opens (creating it on first use) this node's replica of a
// configured volume and runs it as a secondary, connecting to the peer.
// A backing file that does not exist is created sparse, and its replica
// starts UpToDate with a generation both nodes derive from the UUID: two
// new files are both all zeroes, and nothing is synced. A backing that
// exists without metadata gets metadata and starts Inconsistent: its data
// is unknown, so it is synced from the peer, or the first promotion is
// forced and syncs it to the peer.
func StartReplica(o ReplicaOptions) (*Replica, error) {
	cfg := o.Config
	v := cfg.VolumeByName(o.Volume)
	if v == nil {
		return nil, fmt.Errorf("volume %s: not configured", o.Volume)
	}
	self := v.Replica(o.Self)
	if self == nil {
		return nil, fmt.Errorf("volume %s: %s holds no replica of it", v.Name, o.Self)
	}
	if cfg.KeyFile == "" {
		return nil, fmt.Errorf("volume %s: replication needs the cluster key (key_file); an insecure cluster cannot run volumes", v.Name)
	}
	key, err := keyfile.Load(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", v.Name, err)
	}
	rec, err := clusterRecord(cfg, v, o.Self, key)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("volume", v.Name)
	g := &globals{stateDir: cfg.StateDir, out: io.Discard, errOut: io.Discard, base: log}
	if err := ensureMetadata(g, rec, log); err != nil {
		return nil, err
	}
	if err := saveJSON(recordPath(g.stateDir, rec.Name), rec); err != nil {
		return nil, err
	}
	d, err := startDaemon(g, rec, log, daemonOptions{fencer: clusterFencer{o.Fencer}, sink: o.Sink, onEvent: o.OnEvent, managed: true})
	if err != nil {
		return nil, err
	}
	return &Replica{d: d}, nil
}

// clusterRecord is what `tandem volume create` would have recorded for
// this node's replica of v.
func clusterRecord(cfg *config.Config, v *config.Volume, self string, key []byte) (*record, error) {
	var peer string
	for _, r := range v.Replicas {
		if r.Node != self {
			peer = r.Node
		}
	}
	mine, theirs := cfg.NodeLinks(self), cfg.NodeLinks(peer)
	if len(mine) == 0 || len(mine) != len(theirs) {
		return nil, fmt.Errorf("volume %s: nodes %s and %s need the same number of links (%d and %d)", v.Name, self, peer, len(mine), len(theirs))
	}
	rec := &record{Name: v.Name, UUID: VolumeUUID(key, cfg.Cluster, v.Name).String(), Node: self, Peer: peer,
		Size: int64(v.Size), Backing: v.Replica(self).Backing, KeyFile: cfg.KeyFile, Mode: v.Mode, MaxLag: int64(v.MaxLag),
		OnLag: v.OnLag, SplitBrain: v.SplitBrain, Rate: int64(v.ResyncRate),
		NBD: "unix:" + NBDSocket(cfg.StateDir, v.Name), Created: time.Now().UTC()}
	for i := range mine {
		l, err := config.ParseLink(mine[i], v.Port)
		if err != nil {
			return nil, err
		}
		p, err := config.ParseLink(theirs[i], v.Port)
		if err != nil {
			return nil, err
		}
		// The volume's port, whatever port the cluster link names.
		rec.Paths = append(rec.Paths, fmt.Sprintf("%s,%s", l.Addr(), netip.AddrPortFrom(p.Addr(), uint16(v.Port))))
	}
	if _, err := rec.linkPaths(); err != nil {
		return nil, err
	}
	if _, err := rec.replicationConfig(); err != nil {
		return nil, err
	}
	return rec, nil
}

// ensureMetadata creates the replica's metadata on first use, and checks
// that an existing replica is this volume's, at this size.
func ensureMetadata(g *globals, rec *record, log *slog.Logger) error {
	id, err := replication.ParseVolumeID(rec.UUID)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(rec.Backing)
	fresh := errors.Is(statErr, os.ErrNotExist) && !strings.HasPrefix(rec.Backing, "raid:")
	o := meta.DefaultCreateOptions()
	o.ID, o.Node, o.Peer, o.Name, o.DataSize = id, rec.Node, rec.Peer, rec.Backing, rec.Size
	dev, _, err := openForCreate(g.stateDir, log, rec.Backing, "", rec.Size, "", o)
	if err != nil {
		return fmt.Errorf("volume %s: %w", rec.Name, err)
	}
	defer dev.Close()
	// A look only (its errors are returned): the replica's own open logs
	// what it finds, and two "opened" records read as two opens.
	md, err := meta.Open(dev, meta.OpenOptions{Name: rec.Backing, Logger: slog.New(slog.DiscardHandler)})
	switch {
	case err == nil:
		defer md.Close()
		if md.ID() != id {
			return fmt.Errorf("volume %s: %s holds volume %s, not this cluster's volume %s (%s); wipe its metadata or give another backing", rec.Name, rec.Backing, md.ID(), rec.Name, rec.UUID)
		}
		if md.DataSize() != rec.Size {
			return fmt.Errorf("volume %s: %s holds %d bytes of data, the config says size %d; resizing is not supported", rec.Name, rec.Backing, md.DataSize(), rec.Size)
		}
		return nil
	case !errors.Is(err, meta.ErrNoMetadata):
		return fmt.Errorf("volume %s: %w", rec.Name, err)
	}
	if fresh {
		o.Disk, o.Gen = replication.UpToDate, replication.GenIDs{Current: cleanGen(id)}
	}
	md, err = meta.Create(dev, o)
	if err != nil {
		return fmt.Errorf("volume %s: create metadata on %s: %w", rec.Name, rec.Backing, err)
	}
	log.Info("volume: replica created", "backing", rec.Backing, "size", rec.Size, "new_file", fresh, "uuid", rec.UUID)
	return md.Close()
}

// clusterFencer is the cluster's PeerFencer in the daemon: raft keeps the
// epochs, so a promotion has nothing to record locally.
type clusterFencer struct{ replication.PeerFencer }

func (clusterFencer) promoted(replication.Epoch) error { return nil }

// Promote makes the replica primary at the group's epoch and starts its
// NBD socket (NBDSocket). force promotes a replica that is not UpToDate
// (a new volume's first promotion).
func (r *Replica) Promote(epoch uint64, force bool) error {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	return r.d.promoteAt(replication.Epoch(epoch), force)
}

// Demote makes the replica secondary and stops its NBD socket.
func (r *Replica) Demote() error { return r.d.demote() }

// Disconnect drops the link to the peer until Connect.
func (r *Replica) Disconnect() error { return r.d.vol.Disconnect() }

// Connect lets the link to the peer up again.
func (r *Replica) Connect() error { return r.d.vol.Connect() }

// Outdate marks this replica Outdated (the cluster says it is).
func (r *Replica) Outdate() error { return r.d.vol.Outdate() }

// Depose tells the replica that the cluster gave its group to the peer
// at epoch (volume.Depose).
func (r *Replica) Depose(epoch uint64) { r.d.vol.Depose(replication.Epoch(epoch)) }

// Status is the engine's status.
func (r *Replica) Status() volume.Status { return r.d.vol.Status() }

// Device is the volume as a block device: I/O succeeds only while primary.
func (r *Replica) Device() blockdev.Device { return r.d.vol }

// Volume is the engine (for its metrics collector).
func (r *Replica) Volume() *volume.Volume { return r.d.vol }

// Name is the volume's name.
func (r *Replica) Name() string { return r.d.rec.Name }

// Gatherer gathers the replica's metrics: the engine's (tandem_volume_*),
// its replication link's, the RAID array it keeps its data on (when the
// backing is raid:NAME) and, while primary, its NBD export's.
func (r *Replica) Gatherer() prometheus.Gatherer { return r.d.gatherer() }

// Close stops the replica (a primary stays primary on disk; see
// daemon.close).
func (r *Replica) Close() error { return r.d.close() }
