package raid

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"tandem/internal/events"
)

// CheckResult is what a scrub found.
type CheckResult struct {
	Stripes        int64 `json:"stripes"`
	Mismatches     int64 `json:"mismatches"`      // stripes whose redundancy disagreed with the data
	ChecksumErrors int64 `json:"checksum_errors"` // blocks that failed their checksum
	Repaired       int64 `json:"repaired"`        // blocks rewritten
	Unrecoverable  int64 `json:"unrecoverable"`   // stripes that could not be made right
}

// Check reads every stripe, verifies every block against its checksum and
// the redundancy against the data, and reports (mdadm's check). With
// repair it also fixes what it finds (mdadm's repair): a block that fails its
// checksum is rebuilt from the others — the checksums say which copy is
// right — and redundancy that disagrees with checksum-verified data is
// recomputed from it.
func (a *Array) Check(ctx context.Context, repair bool) (CheckResult, error) {
	g := a.geo
	var res CheckResult
	W := a.windowStripes()
	repairedBefore := a.stats.repaired.Load()
	for s0 := int64(0); s0 < g.Stripes(); s0 += W {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		s1 := min(s0+W, g.Stripes())
		h := a.locks.lock(s0, s1, true)
		v, err := a.view()
		if err != nil {
			a.locks.unlock(h)
			return res, err
		}
		for s := s0; s < s1; s++ {
			if a.pendingAt(s) {
				continue // resync owns it
			}
			res.Stripes++
			bad, mism, err := a.checkStripe(v, s, repair)
			res.ChecksumErrors += bad
			if mism {
				res.Mismatches++
			}
			if err != nil {
				res.Unrecoverable++
				a.log.Error("raid: check", "array", a.name, "stripe", s, "err", err)
			}
		}
		a.locks.unlock(h)
	}
	res.Repaired = a.stats.repaired.Load() - repairedBefore
	a.stats.mismatches.Store(res.Mismatches)
	if res.Mismatches > 0 || res.ChecksumErrors > 0 {
		verb := "found"
		if repair {
			verb = "repaired"
		}
		a.emit(events.RaidMismatchesFound, fmt.Sprintf("check %s %d mismatched stripes and %d bad blocks", verb, res.Mismatches, res.ChecksumErrors),
			map[string]any{"mismatches": res.Mismatches, "checksum_errors": res.ChecksumErrors, "repaired": res.Repaired, "repair": repair})
	}
	return res, nil
}

// checkStripe verifies one stripe: every copy and parity block against its
// checksum, and the redundancy against the data.
func (a *Array) checkStripe(v *view, s int64, repair bool) (badBlocks int64, mismatch bool, err error) {
	g := a.geo
	chunk := g.Chunk
	type held struct {
		m   *member
		loc Loc
		cr  *chunkRead
	}
	var all []held
	var locs [MaxMembers]Loc
	read := func(slot int, loc Loc) {
		for _, m := range []*member{v.slot[slot], v.repl[slot]} {
			if m.inSyncAt(s) {
				if cr := a.readChunk(m, loc, 0, chunk, a.checksums); cr != nil {
					all = append(all, held{m, loc, cr})
				}
			}
		}
	}
	for d := 0; d < g.DataChunks(); d++ {
		for _, l := range g.DataLocs(s, d, locs[:0]) {
			read(l.Member, l)
		}
	}
	pm, qm := g.ParityMembers(s)
	if pm >= 0 {
		read(pm, Loc{pm, s * chunk})
	}
	if qm >= 0 {
		read(qm, Loc{qm, s * chunk})
	}
	defer func() {
		for _, h := range all {
			freeBuf(h.cr.buf)
		}
	}()
	for _, h := range all {
		for _, b := range h.cr.bad {
			if b {
				badBlocks++
			}
		}
	}
	// Bad blocks: readRows rebuilds and (with repair) rewrites them.
	sr, err := a.readRows(v, s, 0, chunk, g.ParityChunks() > 0, repair)
	if errors.Is(err, errNeedsRepair) {
		return badBlocks, false, nil
	}
	if err != nil {
		return badBlocks, false, err
	}
	defer sr.free()
	// Redundancy against the (now verified) data.
	var fix []memberWrite
	for _, h := range all {
		if anyBad(h.cr.bad) {
			// Parity levels: readRows rebuilt and rewrote it. Mirrors:
			// readRows stopped at the first good copy, so fix this one here.
			if repair && g.Copies() > 1 {
				for r, bad := range h.cr.bad {
					if bad {
						o := int64(r) * BlockSize
						fix = append(fix, memberWrite{m: h.m, off: h.loc.Off + o, buf: sr.data[0][o : o+BlockSize]})
					}
				}
			}
			continue
		}
		var want []byte
		switch role, _ := g.RoleOf(s, h.loc.Member); role {
		case RoleP:
			want = sr.p
		case RoleQ:
			want = sr.q
		case RoleNone:
			continue
		default:
			want = sr.data[role]
		}
		if !bytes.Equal(h.cr.buf, want) {
			mismatch = true
			if repair {
				fix = append(fix, memberWrite{m: h.m, off: h.loc.Off, buf: want})
			}
		}
	}
	if len(fix) > 0 {
		n := int64(0)
		for _, w := range fix {
			n += int64(len(w.buf)) / BlockSize
		}
		err = a.issueWrites(fix)
		a.stats.repaired.Add(n)
	}
	return badBlocks, mismatch, err
}
