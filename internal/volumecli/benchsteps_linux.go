package volumecli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"tandem/internal/volume"
)

// sequential: the volume's sequential 1 MiB writes against a local
// write of the same bytes and raw TCP between the hosts, each round.
func (b *benchRun) sequential() error {
	n := b.o.size
	offs := sequentialOffsets(n)
	var local, shared, tcp, tlsR, vol, ratios []float64
	for r := 0; r < b.o.rounds; r++ {
		var lw, tw, vw float64
		err := pair(r, func() error {
			d, err := fileSeqWrite(b.raw[0], n, b.buf)
			if err != nil {
				return err
			}
			lw = mbps(n, d)
			if d, err = both(b.raw[0], b.raw[1], func(f *os.File) (time.Duration, error) { return fileSeqWrite(f, n, b.buf) }); err != nil {
				return err
			}
			shared = append(shared, mbps(n, d))
			if d, err = b.net.throughput(n, false); err != nil {
				return fmt.Errorf("TCP baseline: %w", err)
			}
			tw = mbps(n, d)
			if d, err = b.net.throughput(n, true); err != nil {
				return fmt.Errorf("TLS baseline: %w", err)
			}
			tlsR = append(tlsR, mbps(n, d))
			return nil
		}, func() error {
			d, err := nbdWrites(b.client, offs, b.buf, b.o.qd)
			vw = mbps(n, d)
			return err
		})
		if err != nil {
			return err
		}
		local, tcp, vol = append(local, lw), append(tcp, tw), append(vol, vw)
		ratios = append(ratios, vw/min(lw, tw))
		b.o.logf("  round %d: volume %.0f MB/s, local write %.0f, TCP %.0f", r+1, vw, lw, tw)
	}
	bl := &b.res.Baseline
	bl.LocalWriteMBps, bl.LocalWriteSharedMBps, bl.TCPMBps, bl.TLSMBps = median(local), median(shared), median(tcp), median(tlsR)
	b.res.Volume.WriteMBps, b.res.Volume.WriteRounds = median(vol), ratios
	b.res.WriteRatio = median(ratios)
	return nil
}

// latency: 4 KiB write + flush at queue depth 1 through NBD against a
// local 4 KiB write + fdatasync and a TCP round trip, each round.
func (b *benchRun) latency() error {
	per := max(1, b.o.samples/b.o.rounds)
	var local, shared, rtt, vol, writes, fua, floor, floorWrites []time.Duration
	for r := 0; r < b.o.rounds; r++ {
		from := r * per
		err := pair(r, func() error {
			d, err := fileSyncWrites(b.raw[0], per, from, b.buf)
			if err != nil {
				return err
			}
			local = append(local, d...)
			var beside []time.Duration
			if _, err := both(b.raw[0], b.raw[1], func(f *os.File) (time.Duration, error) {
				d, err := fileSyncWrites(f, per/2, from, b.buf)
				if f == b.raw[0] {
					beside = d
				}
				return 0, err
			}); err != nil {
				return err
			}
			shared = append(shared, beside...)
			if d, err = b.net.rtt(per); err != nil {
				return fmt.Errorf("RTT baseline: %w", err)
			}
			rtt = append(rtt, d...)
			p, w, err := floorSamples(b.net.dialFloor, per, from, b.buf)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			floor, floorWrites = append(floor, p...), append(floorWrites, w...)
			return nil
		}, func() error {
			p, w, err := nbdSyncWrites(b.client, per, from, b.buf)
			if err != nil {
				return err
			}
			vol, writes = append(vol, p...), append(writes, w...)
			f, err := nbdFUAWrites(b.client, per/2, from, b.buf)
			fua = append(fua, f...)
			return err
		})
		if err != nil {
			return err
		}
	}
	flushes, floorFlushes := minus(vol, writes), minus(floor, floorWrites)
	bl, v := &b.res.Baseline, &b.res.Volume
	bl.Local4KP50us, bl.Local4KP99us, bl.Local4KSharedP50us = quantileUS(local, 0.5), quantileUS(local, 0.99), quantileUS(shared, 0.5)
	bl.RTTP50us, bl.RTTP99us = quantileUS(rtt, 0.5), quantileUS(rtt, 0.99)
	b.res.LatencyP50us, b.res.LatencyP99us = quantileUS(vol, 0.5), quantileUS(vol, 0.99)
	v.WriteOnlyP50us, v.FlushP50us = quantileUS(writes, 0.5), quantileUS(flushes, 0.5)
	v.FUAP50us, v.FUAP99us = quantileUS(fua, 0.5), quantileUS(fua, 0.99)
	b.res.LatencyBoundus = (bl.Local4KP50us + bl.RTTP50us) * 1.1
	b.res.LatencyFloorus, bl.FloorP99us = quantileUS(floor, 0.5), quantileUS(floor, 0.99)
	bl.FloorWriteP50us, bl.FloorFlushP50us = quantileUS(floorWrites, 0.5), quantileUS(floorFlushes, 0.5)
	if b.res.LatencyFloorus > 0 {
		b.res.LatencyFloorRatio = b.res.LatencyP50us / b.res.LatencyFloorus
		b.res.FloorBoundRatio = b.res.LatencyFloorus / b.res.LatencyBoundus
	}
	if s, err := b.ctlA.status(); err == nil && s.Link != nil {
		v.LinkRTTus = float64(s.Link.RTTus)
	}
	return nil
}

// minus is a[i] - b[i] for each i.
func minus(a, b []time.Duration) []time.Duration {
	d := make([]time.Duration, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

// resync: disconnect, write D bytes in 1 MiB blocks at distinct random
// 1 MiB-aligned offsets (whole bitmap regions, so nothing is rounded),
// connect, and read what the source moved and how fast from its events.
// Each round pairs it with a local write of D bytes (the disk's rate).
func (b *benchRun) resync() error {
	d := b.o.resync
	var transfer, rates, ratios, standalone, local []float64
	v := &b.res.Volume
	for r := 0; r < b.o.rounds; r++ {
		var lw float64
		err := pair(r, func() error {
			t, err := fileSeqWrite(b.raw[0], d, b.buf)
			lw = mbps(d, t)
			return err
		}, func() error {
			moved, wire, secs, fromConnect, alone, err := b.resyncOnce(uint64(r + 10))
			if err != nil {
				return err
			}
			transfer = append(transfer, float64(moved)/float64(d))
			rates = append(rates, mbps(moved, secs))
			standalone = append(standalone, alone)
			v.ResyncMoved, v.ResyncWireBytes, v.ResyncSeconds, v.ResyncConnectSec = moved, wire, secs.Seconds(), fromConnect.Seconds()
			return nil
		})
		if err != nil {
			return err
		}
		local = append(local, lw)
		base := lw
		if tcp := b.res.Baseline.TCPMBps; tcp > 0 { // 0: --skip left the sequential step out
			base = min(lw, tcp)
		}
		ratios = append(ratios, rates[len(rates)-1]/base)
		b.o.logf("  round %d: moved %.2f × D at %.0f MB/s, local write %.0f MB/s", r+1, transfer[r], rates[r], lw)
	}
	v.ResyncWritten, v.ResyncMBps, v.StandaloneMBps = d, median(rates), median(standalone)
	b.res.ResyncTransferRatio, b.res.ResyncRateRatio = median(transfer), median(ratios)
	if tls := b.res.Baseline.TLSMBps; tls > 0 {
		b.res.ResyncRateTLSRatio = v.ResyncMBps / min(median(local), tls)
	}
	return nil
}

func (b *benchRun) resyncOnce(seed uint64) (moved, wire int64, secs, fromConnect time.Duration, aloneMBps float64, err error) {
	if err = b.ctlA.call("POST", "disconnect", controlRequest{}, nil); err != nil {
		return
	}
	if _, err = b.waitStatus(10*time.Second, "disconnected", func(s volume.Status) bool { return s.Connection != "Connected" }); err != nil {
		return
	}
	t, err := nbdWrites(b.client, scatteredOffsets(b.o.size, b.o.resync, seed), b.buf, b.o.qd)
	if err != nil {
		return
	}
	aloneMBps = mbps(b.o.resync, t)
	t0 := time.Now()
	if err = b.ctlA.call("POST", "connect", controlRequest{}, nil); err != nil {
		return
	}
	s, err := b.waitStatus(10*time.Minute, "resynced", func(s volume.Status) bool {
		_, ok := eventAfter(s, "resync_finished", t0)
		return ok && s.Sync == "" && s.Connection == "Connected"
	})
	if err != nil {
		return
	}
	fin, _ := eventAfter(s, "resync_finished", t0)
	start, ok := eventAfter(s, "resync_started", t0)
	if !ok || strings.HasPrefix(fin.Message, "interrupted") {
		err = fmt.Errorf("resync: %s %s", fin.Kind, fin.Message)
		return
	}
	moved, _ = asInt(fin.Attrs["bytes"])
	if s.Link != nil {
		wire = int64(s.Link.BytesOut)
	}
	return moved, wire, fin.Time.Sub(start.Time), fin.Time.Sub(t0), aloneMBps, nil
}

// verify: an online verify of the whole volume against a local
// sequential read of as many bytes, the page cache dropped before each.
func (b *benchRun) verify() error {
	n := b.o.size
	var local, shared, vol, ratios []float64
	v := &b.res.Volume
	for r := 0; r < b.o.rounds; r++ {
		var lr, vr float64
		err := pair(r, func() error {
			if err := b.dropCaches(); err != nil {
				return err
			}
			d, err := fileSeqRead(b.raw[0], n, b.buf)
			if err != nil {
				return err
			}
			lr = mbps(n, d)
			if err := b.dropCaches(); err != nil {
				return err
			}
			d, err = both(b.raw[0], b.raw[1], func(f *os.File) (time.Duration, error) { return fileSeqRead(f, n, make([]byte, benchBlock)) })
			shared = append(shared, mbps(n, d))
			return err
		}, func() error {
			if err := b.dropCaches(); err != nil {
				return err
			}
			t0 := time.Now()
			if err := b.ctlA.call("POST", "verify", controlRequest{}, nil); err != nil {
				return err
			}
			s, err := b.waitStatus(30*time.Minute, "verified", func(s volume.Status) bool {
				_, ok := eventAfter(s, "verify_finished", t0)
				return ok && !s.Verifying
			})
			if err != nil {
				return err
			}
			fin, _ := eventAfter(s, "verify_finished", t0)
			checked, _ := asInt(fin.Attrs["bytes"])
			if bad, _ := asInt(fin.Attrs["mismatched_bytes"]); bad != 0 || checked != n {
				return fmt.Errorf("verify: %s", fin.Message)
			}
			v.VerifyBytes, v.VerifySeconds = checked, fin.Time.Sub(t0).Seconds()
			vr = mbps(checked, fin.Time.Sub(t0))
			return nil
		})
		if err != nil {
			return err
		}
		local, vol = append(local, lr), append(vol, vr)
		ratios = append(ratios, vr/lr)
		b.o.logf("  round %d: verify %.0f MB/s, local read %.0f MB/s", r+1, vr, lr)
	}
	b.res.Baseline.LocalReadMBps, b.res.Baseline.LocalReadSharedMBps = median(local), median(shared)
	b.res.Baseline.DigestMBps = digestRate(b.buf)
	v.VerifyMBps = median(vol)
	b.res.VerifyRatio = median(ratios)
	b.res.VerifySharedRatio = v.VerifyMBps / b.res.Baseline.LocalReadSharedMBps
	return nil
}

func (b *benchRun) dropCaches() error {
	if !b.o.dropCaches {
		return nil
	}
	return dropCaches()
}

// finish judges the targets and writes the notes.
func (b *benchRun) finish() {
	r := &b.res
	var latency float64
	if r.LatencyBoundus > 0 { // 0: --skip left the step out
		latency = r.LatencyP50us / r.LatencyBoundus
	}
	r.Targets = []BenchTarget{
		{"sequential 1 MiB writes / min(local, TCP)", r.WriteRatio, "≥ 0.90", r.WriteRatio >= 0.9},
		{"4 KiB write + flush p50 / bound", latency, "≤ 1.00", latency <= 1},
		{"resync bytes moved / D", r.ResyncTransferRatio, "≤ 1.10", r.ResyncTransferRatio <= 1.1},
		{"resync rate / min(disk, link)", r.ResyncRateRatio, "≥ 0.70", r.ResyncRateRatio >= 0.7},
		{"verify rate / local sequential read", r.VerifyRatio, "≥ 0.70", r.VerifyRatio >= 0.7},
	}
	r.Notes = append(r.Notes,
		"both replicas and the baseline files share one filesystem and disk: a replicated write is written (and flushed) twice on it, a verify reads it twice; the 'two at once' baselines show what each host gets then",
		fmt.Sprintf("the volume is driven by tandem's NBD client from host a (the primary's host), %d requests in flight on one connection for sequential writes, one at a time for 4 KiB write + flush (a WRITE then a FLUSH)", r.QueueDepth),
		"resync: D is written in 1 MiB blocks at distinct 1 MiB-aligned offsets, whole 64 KiB bitmap regions, so nothing is rounded up (a 4 KiB write would dirty a whole 64 KiB region); rate from the source's resync_started to resync_finished events, disk = a local write of D bytes in the same round",
		"verify: from the request to the primary's verify_finished event; the page cache is dropped before it and before the local read")
	if !b.o.dropCaches {
		r.Notes = append(r.Notes, "--drop-caches=false: reads may come from the page cache")
	}
}
