package link

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	a, b := nodes(t, 1, func(a, b *Config) { a.Epoch, b.Epoch = 2, 2 })
	sa, sb := next(t, a, 3*time.Second), next(t, b, 3*time.Second)
	c := NewCollector()
	c.Add(b.l)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	send(t, sa, Frame{Kind: 1, Epoch: 2, Payload: make([]byte, 100)})
	recv(t, sb, time.Second)
	sa.Close(nil)
	<-sb.Done()
	sb = next(t, b, 3*time.Second) // a redials
	sa = next(t, a, 3*time.Second)
	send(t, sa, Frame{Kind: 1, Epoch: 1}) // stale
	recv(t, sa, time.Second)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			name := strings.TrimPrefix(mf.GetName(), "tandem_replication_link_")
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "direction" {
					name += "/" + lp.GetValue()
				}
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"frames_total/in": 1, "frames_total/out": 0, "sessions_total": 2, "stale_frames_total": 1,
		"up": 1, "path": 0, "epoch": 2, "refusals_total": 0,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if got["bytes_total/in"] < 2*HeaderSize+100 {
		t.Errorf("bytes in: %v", got["bytes_total/in"])
	}
	if series != 12 {
		t.Errorf("%d series, want 12", series)
	}
}
