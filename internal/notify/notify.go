// Package notify sends the events an agent records, of the kinds the
// configuration names (notify:), to an exec hook (like keepalived's notify
// scripts: the event as JSON on standard input, TANDEM_* variables) and to
// a webhook (a JSON POST over HTTPS with a bearer token). It is a Sink on
// the node's event bus whose Publish only enqueues: a hook that hangs or a
// webhook that is down never holds up the agent, least of all a takeover.
// Each target has its own bounded queue (the oldest event is dropped when
// it is full, counted and logged), a timeout per call (a hook is killed
// with its process group), and retries with doubling backoff.
//
// It imports config (its section), events, clock and buildinfo; node
// wires it.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/events"
)

// Target delivers one event. An error marked Permanent is not retried.
type Target interface {
	Name() string
	Deliver(ctx context.Context, e Message) error
}

// Message is what a target sends: the event and the cluster it happened
// in, and its JSON (the hook's standard input, the webhook's body).
type Message struct {
	Event   events.Event
	Cluster string
	JSON    []byte
}

// body is the JSON of a message: the event's fields and "cluster".
type body struct {
	events.Event
	Cluster string `json:"cluster"`
}

func newMessage(e events.Event, cluster string) Message {
	b, err := json.Marshal(body{Event: e, Cluster: cluster})
	if err != nil { // attrs that do not encode: send what does
		e.Attrs = map[string]any{"unencodable": err.Error()}
		b, _ = json.Marshal(body{Event: e, Cluster: cluster})
	}
	return Message{Event: e, Cluster: cluster, JSON: b}
}

// permanent marks a failure that a retry cannot mend (a 4xx answer).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Options wire a Notifier.
type Options struct {
	Logger     *slog.Logger
	Clock      clock.Clock           // for the backoff (default: real)
	Registerer prometheus.Registerer // nil: no metrics
	// Targets replaces the targets built from the configuration (tests).
	Targets []Target
}

// Notifier is the Sink.
type Notifier struct {
	kinds   map[events.Kind]bool
	cluster string
	workers []*worker
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New builds the notifier of cfg (cfg.Enabled() should hold) and starts
// its workers; Close stops them.
func New(cfg config.Notify, cluster string, o Options) (*Notifier, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	targets := o.Targets
	if targets == nil {
		if cfg.Exec != nil {
			targets = append(targets, NewExec(cfg.Exec.Command))
		}
		if cfg.Webhook != nil {
			w, err := NewWebhook(*cfg.Webhook)
			if err != nil {
				return nil, err
			}
			targets = append(targets, w)
		}
	}
	m := newMetrics()
	if o.Registerer != nil {
		if err := o.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("notify: metrics: %w", err)
		}
	}
	n := &Notifier{kinds: map[events.Kind]bool{}, cluster: cluster, log: o.Logger}
	for _, k := range cfg.NotifyKinds() {
		n.kinds[k] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	for _, t := range targets {
		// Every target's series from the start, at 0: an alert on a rise
		// of failures or drops needs them before the first.
		m.sent.WithLabelValues(t.Name())
		m.failures.WithLabelValues(t.Name())
		m.queued.WithLabelValues(t.Name())
		for _, reason := range []string{"queue_full", "failed", "stopped"} {
			m.dropped.WithLabelValues(t.Name(), reason)
		}
		w := &worker{t: t, q: newQueue(cfg.Queue), wake: make(chan struct{}, 1), timeout: cfg.Timeout.D(),
			retries: cfg.Retries, backoff: cfg.Backoff.D(), clk: o.Clock, m: m,
			log: o.Logger.With("notify", t.Name())}
		n.workers = append(n.workers, w)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			w.run(ctx)
		}()
	}
	return n, nil
}

// Publish enqueues e for every target when its kind is notified. It never
// waits for a target.
func (n *Notifier) Publish(e events.Event) {
	if !n.kinds[e.Kind] {
		return
	}
	msg := newMessage(e, n.cluster)
	for _, w := range n.workers {
		w.enqueue(msg)
	}
}

// Close lets the targets deliver what is queued for up to grace (the
// agent's last events: "agent stopped"), then stops them, killing a hook
// still running; what is left is dropped and logged.
func (n *Notifier) Close(grace time.Duration) {
	if n == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		for _, w := range n.workers {
			w.close()
		}
		n.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		n.cancel()
		<-done
	}
	n.cancel()
	for _, w := range n.workers {
		if left := w.q.len(); left > 0 {
			w.m.dropped.WithLabelValues(w.t.Name(), "stopped").Add(float64(left))
			w.log.Warn("notifications not sent: the agent stopped", "dropped", left)
		}
	}
}

// worker delivers one target's queue in order.
type worker struct {
	t       Target
	mu      sync.Mutex
	q       *queue
	closing bool
	wake    chan struct{}
	timeout time.Duration
	retries int
	backoff time.Duration
	clk     clock.Clock
	m       *metrics
	log     *slog.Logger

	// Drops are logged at most once a minute, with how many.
	dropsUnlogged int
	lastDropLog   time.Time
}

func (w *worker) enqueue(m Message) {
	w.mu.Lock()
	dropped := w.q.push(m)
	if dropped {
		w.dropsUnlogged++
	}
	logNow := dropped && w.clk.Since(w.lastDropLog) >= time.Minute
	n := w.dropsUnlogged
	if logNow {
		w.lastDropLog, w.dropsUnlogged = w.clk.Now(), 0
	}
	length := w.q.len()
	w.mu.Unlock()
	if dropped {
		w.m.dropped.WithLabelValues(w.t.Name(), "queue_full").Inc()
	}
	w.m.queued.WithLabelValues(w.t.Name()).Set(float64(length))
	if logNow {
		// Logged from the event path, but slog handlers only write.
		w.log.Warn("notification queue full: dropped the oldest", "dropped", n, "queue", w.q.size(), "kind", m.Event.Kind)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) close() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next waits for the next message; false when closing with nothing left,
// or cancelled.
func (w *worker) next(ctx context.Context) (Message, bool) {
	for {
		w.mu.Lock()
		m, ok := w.q.pop()
		closing := w.closing
		length := w.q.len()
		w.mu.Unlock()
		if ok {
			w.m.queued.WithLabelValues(w.t.Name()).Set(float64(length))
			return m, true
		}
		if closing {
			return Message{}, false
		}
		select {
		case <-ctx.Done():
			return Message{}, false
		case <-w.wake:
		}
	}
}

func (w *worker) run(ctx context.Context) {
	name := w.t.Name()
	for {
		m, ok := w.next(ctx)
		if !ok {
			return
		}
		for attempt := 0; ; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, w.timeout)
			err := w.t.Deliver(cctx, m)
			timedOut := cctx.Err() == context.DeadlineExceeded
			cancel()
			if err == nil {
				w.m.sent.WithLabelValues(name).Inc()
				break
			}
			if timedOut {
				err = fmt.Errorf("no result within %s: %w", w.timeout, err)
			}
			w.m.failures.WithLabelValues(name).Inc()
			if ctx.Err() != nil {
				w.m.dropped.WithLabelValues(name, "stopped").Inc()
				return
			}
			if IsPermanent(err) || attempt >= w.retries {
				w.m.dropped.WithLabelValues(name, "failed").Inc()
				w.log.Warn("notification not sent", "kind", m.Event.Kind, "subject", m.Event.Subject, "tries", attempt+1, "err", err)
				break
			}
			w.log.Debug("notification failed; retrying", "kind", m.Event.Kind, "try", attempt+1, "err", err)
			if !sleep(ctx, w.clk, Backoff(w.backoff, attempt)) {
				w.m.dropped.WithLabelValues(name, "stopped").Inc()
				return
			}
		}
	}
}

// MaxBackoff caps the doubling wait between retries.
const MaxBackoff = time.Minute

// Backoff is the wait before retry attempt+1: base doubled attempt times,
// at most MaxBackoff.
func Backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for range attempt {
		d *= 2
		if d >= MaxBackoff {
			return MaxBackoff
		}
	}
	return min(d, MaxBackoff)
}

func sleep(ctx context.Context, clk clock.Clock, d time.Duration) bool {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}
