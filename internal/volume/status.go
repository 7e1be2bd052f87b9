package volume

import (
	"fmt"
	"time"

	"tandem/internal/replication"
)

// Status is what `tandem volume status` shows of one volume on one node.
type Status struct {
	Name string               `json:"name"`
	ID   replication.VolumeID `json:"-"`
	UUID string               `json:"uuid"`
	Node string               `json:"node"`
	Peer string               `json:"peer"`
	Size int64                `json:"size_bytes"`
	Mode string               `json:"mode"`

	Role       string `json:"role"`
	Disk       string `json:"disk"`
	PeerRole   string `json:"peer_role"`
	PeerDisk   string `json:"peer_disk"`
	Connection string `json:"connection"`
	// Sync: "", "source" or "target".
	Sync        string  `json:"sync,omitempty"`
	ResyncTotal int64   `json:"resync_total_bytes,omitempty"`
	ResyncDone  int64   `json:"resync_done_bytes,omitempty"`
	ResyncPct   float64 `json:"resync_percent,omitempty"`
	// ResyncRate is the measured rate in bytes/s; ETA what is left at it.
	ResyncRate     float64 `json:"resync_rate_bytes_per_second,omitempty"`
	ResyncETA      string  `json:"resync_eta,omitempty"`
	RateLimit      int64   `json:"rate_limit_bytes_per_second"`
	OutOfSync      int64   `json:"out_of_sync_bytes"`
	LagBytes       int64   `json:"lag_bytes"`
	Suspended      string  `json:"suspended,omitempty"`
	Ahead          bool    `json:"ahead,omitempty"`
	Verifying      bool    `json:"verifying,omitempty"`
	VerifyDone     int64   `json:"verify_checked_bytes,omitempty"`
	VerifyBad      int64   `json:"verify_mismatched_bytes,omitempty"`
	Epoch          uint64  `json:"epoch"`
	CrashedPrimary bool    `json:"crashed_primary,omitempty"`
	DiskError      string  `json:"disk_error,omitempty"`
	GenIDs         string  `json:"generation_ids"`

	// WriteP50/P99: client writes over the last 1024 (µs), flushes too.
	WriteP50us int64 `json:"write_p50_us"`
	WriteP99us int64 `json:"write_p99_us"`
	FlushP50us int64 `json:"flush_p50_us"`

	Link   *LinkStatus `json:"link,omitempty"`
	Events []Event     `json:"events,omitempty"`
	At     time.Time   `json:"at"`
}

// LinkStatus is the session with the peer.
type LinkStatus struct {
	Path     int    `json:"path"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Since    string `json:"since"`
	RTTus    int64  `json:"rtt_us"`
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// Status returns the volume's state as of the loop's last step.
func (v *Volume) Status() Status {
	s := *v.status.Load()
	if ss := v.session(); ss != nil {
		st := ss.s.State()
		s.Link = &LinkStatus{Path: st.Path, Local: st.Local.String(), Remote: st.Remote.String(),
			Since: st.Since.UTC().Format(time.RFC3339), RTTus: st.RTT.Microseconds(), BytesIn: st.BytesIn, BytesOut: st.BytesOut}
	}
	return s
}

func (v *Volume) session() *session {
	v.sessMu.Lock()
	defer v.sessMu.Unlock()
	return v.sessPub
}

// publish records the status (from the loop).
func (v *Volume) publish() {
	ms := v.m.Status()
	now := v.clk.Now()
	s := &Status{
		Name: v.name, ID: v.cfg.Volume, UUID: v.cfg.Volume.String(), Node: v.cfg.Node, Peer: v.md.State().Peer,
		Size: v.cfg.Size, Mode: v.cfg.Mode.String(),
		Role: ms.Role.String(), Disk: ms.Disk.String(), PeerRole: ms.PeerRole.String(), PeerDisk: ms.PeerDisk.String(),
		Connection: ms.Connection, Sync: ms.Sync, ResyncTotal: ms.ResyncTotal, ResyncDone: ms.ResyncDone,
		RateLimit: v.rateLimit, OutOfSync: ms.OutOfSync, LagBytes: ms.LagBytes, Suspended: v.suspendWhy,
		Ahead: ms.Ahead, Verifying: ms.Verifying, VerifyDone: ms.VerifyDone, VerifyBad: ms.VerifyBad,
		Epoch: uint64(ms.Epoch), CrashedPrimary: ms.CrashedPrimary, GenIDs: genString(ms.GenIDs),
		Events: append([]Event(nil), v.lastEvents...), At: now,
	}
	s.WriteP50us, s.WriteP99us, s.FlushP50us = v.lat.quantiles(now)
	if v.metaErr != nil {
		s.DiskError = v.metaErr.Error()
	}
	if ms.Sync != "" && ms.ResyncTotal > 0 {
		s.ResyncPct = 100 * float64(ms.ResyncDone) / float64(ms.ResyncTotal)
		if v.rsStart.IsZero() || ms.ResyncDone < v.rsDone0 {
			v.rsStart, v.rsDone0 = now, ms.ResyncDone
		}
		if el := now.Sub(v.rsStart).Seconds(); el > 0.5 {
			s.ResyncRate = float64(ms.ResyncDone-v.rsDone0) / el
			if s.ResyncRate > 0 {
				s.ResyncETA = time.Duration(float64(ms.ResyncTotal-ms.ResyncDone) / s.ResyncRate * float64(time.Second)).Round(time.Second).String()
			}
		}
	} else {
		v.rsStart = time.Time{}
	}
	v.status.Store(s)
	v.sessMu.Lock()
	v.sessPub = v.sess
	v.sessMu.Unlock()
}

func genString(g replication.GenIDs) string {
	return fmt.Sprintf("%016X:%016X:%016X:%016X", uint64(g.Current), uint64(g.Bitmap), uint64(g.History[0]), uint64(g.History[1]))
}
