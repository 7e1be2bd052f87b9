package mdstat

import (
	"fmt"

	"tandem/internal/events"
)

// ProgressStep is the rebuild progress granularity of RebuildProgress
// events (mdadm --monitor's default --increment is 20).
const ProgressStep = 20.0

// Diff returns the health events that explain how prev became cur, in the
// vocabulary of tandem's own RAID (mdadm --monitor's event names). Times
// and Node are left for the caller. An array seen for the first time
// reports only what is wrong with it (DegradedArray, a running rebuild).
func Diff(prev, cur Snapshot) []events.Event {
	var out []events.Event
	ev := func(k events.Kind, a *Array, msg string, attrs map[string]any) {
		out = append(out, events.Event{Kind: k, Subject: "/dev/" + a.Name, Message: msg, Attrs: attrs})
	}
	for _, name := range cur.Names() {
		c := cur.Arrays[name]
		p, seen := prev.Arrays[name]
		if !seen {
			p = &Array{Name: name}
		}
		for _, d := range c.Devices {
			pd, ok := p.device(d.Name)
			if d.Faulty && (!ok || !pd.Faulty) {
				ev(events.RaidFail, c, fmt.Sprintf("%s failed", d.Name), map[string]any{"member": d.Name})
			}
		}
		if c.Degraded() && (!seen || !p.Degraded()) {
			ev(events.RaidDegradedArray, c, fmt.Sprintf("%s is degraded [%d/%d] [%s]", name, c.Raid, c.InSync, c.Map),
				map[string]any{"raid_disks": c.Raid, "in_sync": c.InSync})
		}
		running := c.Sync != "" && !c.Pending
		wasRunning := p.Sync != "" && !p.Pending
		if running && (!wasRunning || p.Sync != c.Sync) {
			ev(events.RaidRebuildStarted, c, fmt.Sprintf("%s started on %s", c.Sync, name), map[string]any{"action": c.Sync})
		}
		if running && wasRunning && p.Sync == c.Sync {
			if step := int(c.Percent / ProgressStep); step > int(p.Percent/ProgressStep) && step > 0 {
				ev(events.RaidRebuildProgress, c, fmt.Sprintf("%s of %s at %.1f%%, speed %s, finish %s", c.Sync, name, c.Percent, c.Speed, c.Finish),
					map[string]any{"action": c.Sync, "percent": int(step * int(ProgressStep))})
			}
		}
		if wasRunning && (!running || p.Sync != c.Sync) && seen {
			ev(events.RaidRebuildFinished, c, fmt.Sprintf("%s of %s finished", p.Sync, name), map[string]any{"action": p.Sync})
			if (p.Sync == "check" || p.Sync == "repair") && c.Mismatch > 0 {
				ev(events.RaidMismatchesFound, c, fmt.Sprintf("%s found %d mismatches on %s", p.Sync, c.Mismatch, name),
					map[string]any{"mismatch_cnt": c.Mismatch})
			}
			if p.Sync == "recovery" && c.InSync > p.InSync {
				for _, d := range c.Devices {
					if pd, ok := p.device(d.Name); ok && !d.Spare && !d.Faulty && (pd.Spare || pd.Role >= p.Raid) {
						ev(events.RaidSpareActive, c, fmt.Sprintf("%s is now active in %s", d.Name, name), map[string]any{"member": d.Name})
					}
				}
			}
		}
	}
	return out
}

func (a *Array) device(name string) (Device, bool) {
	for _, d := range a.Devices {
		if d.Name == name {
			return d, true
		}
	}
	return Device{}, false
}
