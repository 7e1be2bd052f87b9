package heartbeat

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/clock"
	"tandem/internal/seal"
)

// RunnerConfig wires an Engine to a Transport.
type RunnerConfig struct {
	Engine Config
	// Key is the cluster key; nil runs in plaintext (insecure: true).
	Key []byte
	// Addrs[i][j] is voter i's address on link j (index-aligned with
	// Engine.Voters). A datagram counts only if it comes from the address
	// its authenticated header claims.
	Addrs     [][]netip.AddrPort
	Transport Transport
	Clock     clock.Clock
	Logger    *slog.Logger
	// OnChange receives every transition, in order, from one goroutine.
	OnChange func(Change)
	// Registerer receives the metrics (nil: none).
	Registerer prometheus.Registerer
	// Boot is this life's boot number (NextBoot with the state directory);
	// 0 takes one from NextBoot("").
	Boot uint32
}

// Runner runs an Engine: it ticks it on time, seals and sends its datagrams,
// opens and checks received ones, and counts what it drops. All methods are
// safe for concurrent use.
type Runner struct {
	cfg       RunnerConfig
	deliverMu sync.Mutex
	mu        sync.Mutex
	// sendMu serialises send's reused buffers.
	sendMu   sync.Mutex
	sendBuf  []byte
	sendPkts []outPacket
	payload  []byte
	batch    []Packet
	eng      *Engine
	sealer   *seal.Sealer
	opener   *seal.Opener
	drops    map[string]uint64
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	start    time.Time

	mDrops *prometheus.CounterVec
	mSent  prometheus.Counter
	mRecv  prometheus.Counter
}

// Drop reasons, as counted in Drops and tandem_heartbeat_dropped_packets_total.
const (
	DropUnknownSource = "unknown_source"
	DropMalformed     = "malformed"
	DropAuth          = "auth"
	DropReplay        = "replay"
	DropPlaintext     = "plaintext"
	DropConfig        = "config_mismatch"
	DropRate          = "rate_limited" // a sender's new boots tried too often (seal.DeriveEvery)
)

// StartRunner starts the engine's goroutine.
func StartRunner(cfg RunnerConfig) *Runner {
	now := cfg.Clock.Now()
	if cfg.Boot == 0 {
		cfg.Boot, _ = NextBoot("") // cannot fail without a file
	}
	cfg.Engine.FirstRound = uint64(cfg.Boot) << 32
	r := &Runner{
		cfg:    cfg,
		eng:    New(cfg.Engine, now),
		sealer: seal.NewSealer(cfg.Key, uint8(cfg.Engine.Self), uint64(cfg.Boot)),
		opener: seal.NewOpener(cfg.Key),
		drops:  map[string]uint64{},
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		start:  now,
		mDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_heartbeat_dropped_packets_total",
			Help: "Datagrams dropped, by reason (forged, tampered, replayed, from outside the cluster, malformed).",
		}, []string{"reason"}),
		mSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_heartbeat_sent_packets_total", Help: "Datagrams sent."}),
		mRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_heartbeat_received_packets_total", Help: "Datagrams accepted."}),
	}
	if cfg.Registerer != nil {
		// Every reason from the start, at 0: an alert on a rise needs
		// the series before the first drop.
		for _, reason := range []string{DropUnknownSource, DropMalformed, DropAuth, DropReplay, DropPlaintext, DropConfig, DropRate} {
			r.mDrops.WithLabelValues(reason)
		}
		cfg.Registerer.MustRegister(r.mDrops, r.mSent, r.mRecv)
	}
	if d, ok := cfg.Transport.(DirectReceiver); ok {
		d.SetHandler(func(dg Datagram) {
			r.handle(dg)
			r.deliverChanges()
		})
	}
	go r.loop()
	return r
}

func (r *Runner) loop() {
	defer close(r.done)
	// An Alarm, not a Go timer: on the real clock it wakes one thread
	// where a Go timer wakes two (clock.NewAlarm).
	alarm := clock.NewAlarm(r.cfg.Clock)
	defer alarm.Close()
	start := r.cfg.Clock.Now()
	alarm.Set(start, start) // the first round at once
	recv := r.cfg.Transport.Recv()
	for {
		select {
		case <-r.stop:
			return
		case d, ok := <-recv:
			if !ok {
				recv = nil
				continue
			}
			r.handle(d)
		case <-alarm.C():
			now := r.cfg.Clock.Now()
			r.mu.Lock()
			out := r.eng.Tick(now)
			r.mu.Unlock()
			r.send(out)
		case <-r.wake:
		}
		r.deliverChanges()
		now := r.cfg.Clock.Now()
		r.mu.Lock()
		next := r.eng.NextTick(now)
		r.mu.Unlock()
		alarm.Set(now, next)
	}
}

// deliverChanges hands the engine's transitions to OnChange, in order, one
// caller at a time (datagrams may be handled on reader goroutines).
func (r *Runner) deliverChanges() {
	r.deliverMu.Lock()
	defer r.deliverMu.Unlock()
	r.mu.Lock()
	changes := r.eng.Changes()
	r.mu.Unlock()
	if r.cfg.OnChange != nil {
		for _, c := range changes {
			r.cfg.OnChange(c)
		}
	}
	if len(changes) > 0 {
		r.poke() // the next deadline may have moved
	}
}

func (r *Runner) handle(d Datagram) {
	now := r.cfg.Clock.Now()
	// Who it claims to be must match where it came from before any
	// cryptography: a flood from outside the cluster costs a header parse.
	h, err := seal.ParseHeader(d.Data)
	if err != nil {
		r.drop(openReason(err))
		return
	}
	s, l := int(h.Sender), int(h.Link)
	if s >= len(r.cfg.Addrs) || s == r.cfg.Engine.Self || l != d.Link || l >= len(r.cfg.Addrs[s]) || r.cfg.Addrs[s][l] != d.From {
		r.drop(DropUnknownSource)
		return
	}
	r.mu.Lock()
	_, payload, err := r.opener.Open(d.Data, now.Sub(r.start).Nanoseconds())
	if err != nil {
		r.mu.Unlock()
		r.drop(openReason(err))
		return
	}
	m, err := Decode(payload)
	if err != nil {
		r.mu.Unlock()
		r.drop(DropMalformed)
		return
	}
	if m.ConfigHash != r.cfg.Engine.ConfigHash {
		r.mu.Unlock()
		r.drop(DropConfig)
		return
	}
	out := r.eng.Receive(now, s, l, m)
	r.mu.Unlock()
	r.mRecv.Inc()
	r.send(out)
}

func openReason(err error) string {
	switch {
	case errors.Is(err, seal.ErrAuth):
		return DropAuth
	case errors.Is(err, seal.ErrReplay):
		return DropReplay
	case errors.Is(err, seal.ErrInsecure), errors.Is(err, seal.ErrSecure):
		return DropPlaintext
	case errors.Is(err, seal.ErrRate):
		return DropRate
	}
	return DropMalformed
}

func (r *Runner) drop(reason string) {
	r.mu.Lock()
	first := r.drops[reason] == 0
	r.drops[reason]++
	r.mu.Unlock()
	r.mDrops.WithLabelValues(reason).Inc()
	if first && r.cfg.Logger != nil {
		r.cfg.Logger.Warn("dropping datagrams", "reason", reason)
	}
}

func (r *Runner) send(out []Outgoing) {
	if len(out) == 0 {
		return
	}
	// Sealed into one reused buffer (loop and readers both send, one at
	// a time), then sent link by link: a round's datagrams on a link go
	// in one call where the transport can (BatchSender).
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	r.mu.Lock()
	buf, pkts := r.sendBuf[:0], r.sendPkts[:0]
	for _, o := range out {
		if o.To >= len(r.cfg.Addrs) || o.Link >= len(r.cfg.Addrs[o.To]) {
			continue
		}
		start := len(buf)
		payload, err := o.Msg.Append(r.payload[:0])
		if err != nil {
			if r.cfg.Logger != nil {
				r.cfg.Logger.Error("cannot encode heartbeat", "err", err)
			}
			continue
		}
		r.payload = payload
		buf = r.sealer.Seal(buf, uint8(o.Link), payload)
		pkts = append(pkts, outPacket{link: o.Link, to: r.cfg.Addrs[o.To][o.Link], start: start, end: len(buf)})
	}
	r.mu.Unlock()
	r.sendBuf, r.sendPkts = buf, pkts
	slices.SortStableFunc(pkts, func(a, b outPacket) int { return a.link - b.link })
	batch, _ := r.cfg.Transport.(BatchSender)
	for i := 0; i < len(pkts); {
		link := pkts[i].link
		if batch == nil {
			if err := r.cfg.Transport.Send(link, pkts[i].to, buf[pkts[i].start:pkts[i].end]); err == nil {
				r.mSent.Inc()
			}
			i++
			continue
		}
		b := r.batch[:0]
		for ; i < len(pkts) && pkts[i].link == link; i++ {
			b = append(b, Packet{To: pkts[i].to, Data: buf[pkts[i].start:pkts[i].end]})
		}
		r.batch = b
		n, _ := batch.SendBatch(link, b)
		r.mSent.Add(float64(n))
	}
}

// outPacket is a sealed datagram in Runner.sendBuf.
type outPacket struct {
	link       int
	to         netip.AddrPort
	start, end int
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// SetState installs the applied replicated state (see Engine.SetState).
func (r *Runner) SetState(groups map[string]GroupState, applied uint64) {
	r.mu.Lock()
	r.eng.SetState(groups, applied)
	r.mu.Unlock()
	r.poke()
}

// SetTwoNode applies two-node mode's lease rules (see Engine.SetTwoNode).
func (r *Runner) SetTwoNode(extendAlone, solo bool) {
	r.mu.Lock()
	r.eng.SetTwoNode(extendAlone, solo)
	r.mu.Unlock()
	r.poke()
}

// Lease returns this node's lease on group (see Engine.Lease).
func (r *Runner) Lease(group string) (epoch uint64, until time.Time, ok bool) {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Lease(group, now)
}

// Release gives the lease on group at epoch back (after a clean stop).
func (r *Runner) Release(group string, epoch uint64) {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	out := r.eng.Release(now, group, epoch)
	r.mu.Unlock()
	r.send(out)
	r.poke()
}

// Status returns peer and link liveness.
func (r *Runner) Status() Status {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Status(now)
}

// Up reports whether this node sees voter i alive.
func (r *Runner) Up(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Up(i)
}

// Reachable reports whether voter i is alive as far as this node can tell
// (see Engine.Reachable).
func (r *Runner) Reachable(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Reachable(i)
}

// Applied is voter i's applied consensus index as it last reported it.
func (r *Runner) Applied(i int) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Applied(i)
}

// LastHeard is when voter i last proved alive to this node.
func (r *Runner) LastHeard(i int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.LastHeard(i)
}

// Drops returns the dropped datagram counts by reason.
func (r *Runner) Drops() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]uint64{}
	for k, v := range r.drops {
		out[k] = v
	}
	return out
}

// Stop ends the goroutine and closes the transport.
func (r *Runner) Stop() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	r.cfg.Transport.Close()
}
