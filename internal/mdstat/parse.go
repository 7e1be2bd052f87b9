// Package mdstat owns the Linux md health monitor: it parses /proc/mdstat
// (pure), compares two snapshots into the same health events tandem's own
// RAID publishes (Fail, DegradedArray, SpareActive, RebuildStarted /
// Progress / Finished, MismatchesFound), and polls the file on a clock. Nodes
// that keep their data on md arrays get the same event stream and audit log
// as nodes using tandem's RAID. It imports clock and events; cmd/ and the
// agent may import it.
package mdstat

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Device is one member as /proc/mdstat lists it: sda1[0](F).
type Device struct {
	Name        string `json:"name"`
	Role        int    `json:"role"` // the number in brackets (md's descriptor index)
	Faulty      bool   `json:"faulty,omitempty"`
	Spare       bool   `json:"spare,omitempty"`
	WriteMostly bool   `json:"write_mostly,omitempty"`
	Replacement bool   `json:"replacement,omitempty"`
}

// Array is one md device.
type Array struct {
	Name     string   `json:"name"`
	Active   bool     `json:"active"`
	ReadOnly bool     `json:"read_only,omitempty"`
	Level    string   `json:"level"`
	Devices  []Device `json:"devices"`
	Blocks   int64    `json:"blocks"`
	Raid     int      `json:"raid_disks"` // [n/m]: n
	InSync   int      `json:"in_sync"`    // [n/m]: m
	Map      string   `json:"map"`        // [UU_U]
	// Sync is the running action: resync, recovery, check, repair, reshape
	// (empty when idle); Pending marks one that is DELAYED or PENDING.
	Sync     string  `json:"sync,omitempty"`
	Percent  float64 `json:"percent,omitempty"`
	Finish   string  `json:"finish,omitempty"`
	Speed    string  `json:"speed,omitempty"`
	Pending  bool    `json:"pending,omitempty"`
	Mismatch int64   `json:"mismatch_cnt"` // from sysfs when the monitor can read it; -1 unknown
}

// Degraded reports whether fewer members are in sync than the array has slots.
func (a *Array) Degraded() bool { return a.Raid > 0 && a.InSync < a.Raid }

// Snapshot is a parsed /proc/mdstat.
type Snapshot struct {
	Arrays map[string]*Array
}

// Names returns the arrays in name order.
func (s Snapshot) Names() []string {
	var out []string
	for n := range s.Arrays {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var (
	headRe   = regexp.MustCompile(`^(md\S*) : (active|inactive)(?: \(([^)]*)\))?(?: (\S+))?((?: \S+\[\d+\](?:\([A-Z]\))*)*)\s*$`)
	devRe    = regexp.MustCompile(`(\S+)\[(\d+)\]((?:\([A-Z]\))*)`)
	statusRe = regexp.MustCompile(`^\s+(\d+) blocks.*\[(\d+)/(\d+)\] \[([U_]+)\]`)
	blocksRe = regexp.MustCompile(`^\s+(\d+) blocks`)
	syncRe   = regexp.MustCompile(`(resync|recovery|check|repair|reshape)\s*=\s*([\d.]+)%.*?(?:finish=(\S+))?\s*(?:speed=(\S+))?\s*$`)
	pendRe   = regexp.MustCompile(`(resync|recovery|check|repair|reshape)\s*=\s*(DELAYED|PENDING)`)
)

// Parse reads the text of /proc/mdstat.
func Parse(text string) (Snapshot, error) {
	snap := Snapshot{Arrays: map[string]*Array{}}
	var cur *Array
	sc := bufio.NewScanner(strings.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "Personalities") || strings.HasPrefix(l, "unused devices") || strings.TrimSpace(l) == "":
			if strings.TrimSpace(l) == "" {
				cur = nil
			}
		case strings.HasPrefix(l, "md"):
			m := headRe.FindStringSubmatch(l)
			if m == nil {
				return snap, fmt.Errorf("mdstat: line %d: cannot parse %q", line, l)
			}
			cur = &Array{Name: m[1], Active: m[2] == "active", ReadOnly: strings.Contains(m[3], "read-only"), Level: m[4], Mismatch: -1}
			if !cur.Active && strings.Contains(m[4], "[") { // inactive arrays list no level
				cur.Level = ""
				m[5] = " " + m[4] + m[5]
			}
			for _, d := range devRe.FindAllStringSubmatch(m[5], -1) {
				role, _ := strconv.Atoi(d[2])
				cur.Devices = append(cur.Devices, Device{Name: d[1], Role: role,
					Faulty: strings.Contains(d[3], "(F)"), Spare: strings.Contains(d[3], "(S)"),
					WriteMostly: strings.Contains(d[3], "(W)"), Replacement: strings.Contains(d[3], "(R)")})
			}
			snap.Arrays[cur.Name] = cur
		case cur != nil:
			if m := statusRe.FindStringSubmatch(l); m != nil {
				cur.Blocks, _ = strconv.ParseInt(m[1], 10, 64)
				cur.Raid, _ = strconv.Atoi(m[2])
				cur.InSync, _ = strconv.Atoi(m[3])
				cur.Map = m[4]
			} else if m := blocksRe.FindStringSubmatch(l); m != nil && cur.Blocks == 0 {
				cur.Blocks, _ = strconv.ParseInt(m[1], 10, 64)
			}
			if m := syncRe.FindStringSubmatch(l); m != nil {
				cur.Sync = m[1]
				cur.Percent, _ = strconv.ParseFloat(m[2], 64)
				cur.Finish, cur.Speed = m[3], m[4]
			} else if m := pendRe.FindStringSubmatch(l); m != nil {
				cur.Sync, cur.Pending = m[1], true
			}
		}
	}
	return snap, sc.Err()
}
