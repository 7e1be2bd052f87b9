// Package probe owns the client's view of a service: a prober that sends
// one fresh HTTP request to each target every interval (answered with the
// serving node's name) and watches which MACs answer ARP for a VIP, and the
// pure analysis that turns the timeline into the unavailable window of a
// fault and a split-brain verdict. The demo and the test bed use it; it
// imports no tandem package.
package probe

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Sample is one probe: sent at Sent, finished at Done.
type Sample struct {
	Target string    `json:"target"`
	Sent   time.Time `json:"sent"`
	Done   time.Time `json:"done"`
	Node   string    `json:"node,omitempty"` // who answered; "" on failure
	Err    string    `json:"err,omitempty"`
}

// OK reports whether the probe got an answer.
func (s Sample) OK() bool { return s.Node != "" }

// ARPSample is one ARP request for a VIP and the MACs that answered it.
type ARPSample struct {
	At   time.Time `json:"at"`
	MACs []string  `json:"macs"`
}

// Record is one line of a prober's output: a Sample or an ARPSample.
type Record struct {
	HTTP *Sample    `json:"http,omitempty"`
	ARP  *ARPSample `json:"arp,omitempty"`
}

// Config configures Run.
type Config struct {
	Targets  []string      // URLs
	Interval time.Duration // between probes of one target
	Timeout  time.Duration // per probe
}

// Run probes until ctx ends, calling emit for every finished probe (from
// several goroutines; emit must be safe for that).
func Run(ctx context.Context, cfg Config, emit func(Sample)) {
	client := &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true, // every probe is a new connection, as a new client would be
			DialContext:       (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var wg sync.WaitGroup
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		for _, t := range cfg.Targets {
			wg.Add(1)
			go func(target string) {
				defer wg.Done()
				emit(once(ctx, client, target))
			}(t)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
	}
}

func once(ctx context.Context, client *http.Client, target string) Sample {
	s := Sample{Target: target, Sent: time.Now()}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", target, nil)
	if err == nil {
		var resp *http.Response
		resp, err = client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			err = rerr
			if err == nil && resp.StatusCode == http.StatusOK {
				s.Node = strings.TrimSpace(string(body))
			} else if err == nil {
				s.Err = resp.Status
			}
		}
	}
	if err != nil {
		s.Err = err.Error()
	}
	s.Done = time.Now()
	return s
}

// Writer serializes records as JSON lines, safe for concurrent use.
type Writer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewWriter writes JSON lines to w.
func NewWriter(w io.Writer) *Writer { return &Writer{enc: json.NewEncoder(w)} }

// Write writes one record.
func (w *Writer) Write(r Record) {
	w.mu.Lock()
	w.enc.Encode(r)
	w.mu.Unlock()
}
