package volumecli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"tandem/internal/blockdev"
	"tandem/internal/events"
	"tandem/internal/keyfile"
	"tandem/internal/nbd"
	"tandem/internal/raidcli"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
	"tandem/internal/volume"
	"tandem/internal/volume/meta"
)

func upCmd(g *globals) *cobra.Command {
	var salvage bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "up NAME",
		Short: "Run this node's replica of a volume until 'down' or SIGTERM: the link to the peer, NBD while primary, a control socket",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := loadRecord(g.stateDir, args[0])
			if err != nil {
				return err
			}
			log := g.logger().With("volume", rec.Name)
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer func() { pprof.StopCPUProfile(); pf.Close() }()
			}
			d, err := startDaemon(g, rec, log, daemonOptions{salvage: salvage})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "volume %s up: %s, %s, peer %s, control socket %s\n", rec.Name, rec.Backing,
				formatBytes(d.vol.Size()), rec.Peer, socketPath(g.stateDir, rec.Name))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
			case <-d.downReq:
			}
			return d.close()
		},
	}
	cmd.Flags().BoolVar(&salvage, "salvage", false, "open metadata whose bitmap or activity log is damaged by counting what they cover as dirty (more resync, never less)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile until the volume stops (tandem volume bench --profile)")
	cmd.Flags().MarkHidden("cpuprofile")
	return cmd
}

// daemon is one running volume: the engine, its link, the NBD export
// while primary and the control socket.
type daemon struct {
	g      *globals
	rec    *record
	log    *slog.Logger
	vol    *volume.Volume
	fencer daemonFencer
	audit  *events.Log // nil when sink is set
	sink   func(events.Event)
	// managed: the cluster agent runs this replica and alone changes
	// its role; the control socket refuses primary, secondary and down.
	managed bool
	onEvent func(volume.Event)
	reg     *prometheus.Registry
	ctl     *control

	devs []blockdev.Device // the backing and meta devices, closed last

	mu      sync.Mutex // serializes role changes and the export
	export  *nbd.Server
	exportL net.Listener
	// exportReg holds the running export's metrics (a registry per
	// export: each promotion starts a new server).
	exportReg *prometheus.Registry
	downReq   chan struct{}
	downOne   sync.Once
}

// daemonFencer outdates the peer and learns of this node's promotions.
type daemonFencer interface {
	replication.PeerFencer
	promoted(epoch replication.Epoch) error
}

// daemonOptions are how a daemon differs when the cluster agent runs it:
// its fencer, its event sink, its hook on engine events. Zero values are
// the standalone daemon's.
type daemonOptions struct {
	salvage bool
	fencer  daemonFencer       // nil: the local fencer in the state dir
	sink    func(events.Event) // nil: the audit log in the state dir
	onEvent func(volume.Event)
	managed bool
}

func startDaemon(g *globals, rec *record, log *slog.Logger, opts daemonOptions) (*daemon, error) {
	salvage := opts.salvage
	cfg, err := rec.replicationConfig()
	if err != nil {
		return nil, err
	}
	paths, err := rec.linkPaths()
	if err != nil {
		return nil, err
	}
	key, err := keyfile.Load(rec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", rec.Name, err)
	}
	if c := dialControl(g.stateDir, rec.Name); c != nil {
		return nil, fmt.Errorf("volume %s is up already (control socket %s)", rec.Name, socketPath(g.stateDir, rec.Name))
	}
	dev, mdev, err := openBacking(g.stateDir, rec, log)
	if err != nil {
		return nil, err
	}
	o := meta.OpenOptions{Name: rec.Backing, Salvage: salvage, Logger: log}
	if mdev != nil {
		o.Meta = mdev
	}
	devs := []blockdev.Device{dev}
	if mdev != nil {
		devs = append(devs, mdev)
	}
	closeDevs := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	md, err := meta.Open(dev, o)
	if err != nil {
		closeDevs()
		return nil, fmt.Errorf("volume %s: %w", rec.Name, err)
	}
	if id := md.ID().String(); id != rec.UUID {
		md.Close()
		closeDevs()
		return nil, fmt.Errorf("volume %s: %s holds volume %s, the record says %s", rec.Name, rec.Backing, id, rec.UUID)
	}
	d := &daemon{g: g, rec: rec, log: log, fencer: opts.fencer, sink: opts.sink, onEvent: opts.onEvent, managed: opts.managed,
		reg: prometheus.NewRegistry(), downReq: make(chan struct{}), devs: devs}
	if d.fencer == nil {
		d.fencer = &localFencer{path: fencePath(g.stateDir, rec.Name)}
	}
	if d.sink == nil {
		if d.audit = g.auditLog(log); d.audit != nil {
			d.sink = d.audit.Publish
		}
	}
	st := md.State()
	// The link reports events from its goroutines before the volume
	// that takes them exists.
	var onLink atomic.Pointer[func(link.Event)]
	ln, err := link.Start(link.Config{
		Self: rec.Node, Peer: rec.Peer, Key: key, Volume: md.ID(), Size: uint64(md.DataSize()), Epoch: st.Epoch,
		Paths: paths, Logger: log, Fenced: link.MessageFenced,
		OnEvent: func(e link.Event) {
			if f := onLink.Load(); f != nil {
				(*f)(e)
			}
		},
	})
	if err != nil {
		md.Close()
		closeDevs()
		return nil, fmt.Errorf("volume %s: %w", rec.Name, err)
	}
	col := link.NewCollector()
	col.AddNamed(ln, rec.Name)
	d.reg.MustRegister(col)
	vol, err := volume.Open(volume.Options{Name: rec.Name, Meta: md, Link: ln, Fencer: d.fencer, Replication: cfg,
		Logger: g.logger(), OnEvent: d.publish})
	if err != nil {
		closeDevs()
		return nil, err
	}
	onLinkEv := vol.LinkEvent
	onLink.Store(&onLinkEv)
	d.vol = vol
	d.reg.MustRegister(volume.NewCollector(vol))
	if d.ctl, err = startControl(d); err != nil {
		vol.Close()
		closeDevs()
		return nil, err
	}
	return d, nil
}

// gatherer gathers the daemon's registry, its RAID array's (a raid:NAME
// backing) and the running NBD export's.
func (d *daemon) gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		gs := prometheus.Gatherers{d.reg}
		for _, dev := range d.devs {
			if g, ok := dev.(interface{ Gatherer() prometheus.Gatherer }); ok {
				gs = append(gs, g.Gatherer())
			}
		}
		d.mu.Lock()
		if d.exportReg != nil {
			gs = append(gs, d.exportReg)
		}
		d.mu.Unlock()
		return gs.Gather()
	})
}

// openBacking opens the record's backing device (and meta device).
func openBacking(stateDir string, rec *record, log *slog.Logger) (blockdev.Device, blockdev.Device, error) {
	dev, err := openBackingDevice(stateDir, rec.Backing, log)
	if err != nil {
		return nil, nil, fmt.Errorf("volume %s: backing device: %w", rec.Name, err)
	}
	if rec.Meta == "" {
		return dev, nil, nil
	}
	mdev, err := blockdev.OpenFile(rec.Meta, false)
	if err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("volume %s: meta device: %w", rec.Name, err)
	}
	return dev, mdev, nil
}

// publish writes a volume event to the audit log. A deposition also
// stops the NBD export.
func (d *daemon) publish(e volume.Event) {
	if e.Kind == replication.EventDeposed.String() {
		// Not on this goroutine: the event comes from the engine's loop,
		// which the export's open requests wait on.
		go d.deposed(e.Epoch)
	}
	if d.onEvent != nil {
		d.onEvent(e)
	}
	if d.sink == nil {
		return
	}
	d.sink(events.Event{Time: e.Time, Kind: events.Kind("volume_" + e.Kind), Node: d.rec.Node,
		Subject: d.rec.Name, Epoch: uint64(e.Epoch), Message: e.Message, Attrs: e.Attrs})
}

// promote makes this replica primary at the next epoch and starts the
// NBD export.
func (d *daemon) promote(force bool) (replication.Epoch, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.vol.Status()
	epoch := replication.Epoch(st.Epoch)
	if st.Role != replication.Primary.String() {
		epoch++
	}
	return epoch, d.promoteAt(epoch, force)
}

// promoteAt makes this replica primary at epoch and starts the NBD
// export; d.mu is held.
func (d *daemon) promoteAt(epoch replication.Epoch, force bool) error {
	if err := d.fencer.promoted(epoch); err != nil {
		return fmt.Errorf("volume %s: record the promotion: %w", d.rec.Name, err)
	}
	if err := d.vol.Promote(epoch, force); err != nil {
		return err
	}
	if err := d.startExport(); err != nil {
		return fmt.Errorf("volume %s is primary at epoch %d, but its NBD export did not start: %w", d.rec.Name, epoch, err)
	}
	return nil
}

func (d *daemon) demote() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopExport()
	return d.vol.Demote()
}

// deposed stops the export of a primary that a newer epoch deposed: the
// engine demoted itself, and a secondary serves nothing, as after
// 'secondary' (a deposed primary that kept its export answered every
// request with an error, and looked up to a client). An export that a
// promotion started since, at a newer epoch still, stays. The status may
// not show the deposition yet, so the epoch decides, not the role.
func (d *daemon) deposed(epoch replication.Epoch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.export == nil {
		return
	}
	if st := d.vol.Status(); st.Role == replication.Primary.String() && replication.Epoch(st.Epoch) > epoch {
		return
	}
	d.log.Warn("volume: deposed by a newer epoch: NBD export stopped", "epoch", epoch)
	d.stopExport()
}

func (d *daemon) startExport() error {
	if d.export != nil {
		return nil
	}
	network, addr := "tcp", d.rec.NBD
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
		os.Remove(p)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", d.rec.NBD, err)
	}
	srv := nbd.NewServer(d.log, nbd.Export{Name: d.rec.Name, Description: "tandem replicated volume " + d.rec.Name,
		Device: d.vol, MultiConn: true})
	reg := prometheus.NewRegistry()
	if err := srv.RegisterMetrics(reg); err != nil {
		d.log.Warn("volume: NBD export metrics not registered", "err", err)
	}
	d.export, d.exportL, d.exportReg = srv, ln, reg
	go srv.Serve(ln)
	d.log.Info("volume: NBD export started", "listen", d.rec.NBD, "export", d.rec.Name)
	return nil
}

func (d *daemon) stopExport() {
	if d.export == nil {
		return
	}
	d.export.Close()
	if p, ok := strings.CutPrefix(d.rec.NBD, "unix:"); ok {
		os.Remove(p)
	}
	d.export, d.exportL, d.exportReg = nil, nil, nil
	d.log.Info("volume: NBD export stopped")
}

// down asks the daemon to exit.
func (d *daemon) down() { d.downOne.Do(func() { close(d.downReq) }) }

// close stops everything: the control socket, the export, the engine.
// A primary is left primary on disk: found so at the next up, its
// activity log's extents are resynced to the peer.
func (d *daemon) close() error {
	d.ctl.close()
	d.mu.Lock()
	d.stopExport()
	d.mu.Unlock()
	err := d.vol.Close()
	for _, dev := range d.devs {
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
	}
	if d.audit != nil {
		d.audit.Close()
	}
	return err
}

// waitIdle waits until no resync or verify runs (for --wait).
func waitIdle(ctx context.Context, status func() (volume.Status, error)) (volume.Status, error) {
	for {
		s, err := status()
		if err != nil || (s.Sync == "" && !s.Verifying) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var errDownPrimary = errors.New("the volume is primary here: run 'tandem volume secondary' first, or down --force")

// openBackingDevice opens a file or block device, or assembles a recorded
// tandem raid array (raid:NAME) in this process, with its control socket.
func openBackingDevice(stateDir, backing string, log *slog.Logger) (blockdev.Device, error) {
	if name, ok := strings.CutPrefix(backing, "raid:"); ok {
		return raidcli.OpenRecorded(stateDir, name, log)
	}
	return blockdev.OpenFile(backing, false)
}
