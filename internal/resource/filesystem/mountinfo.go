package filesystem

import (
	"os"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo (proc(5)).
type mount struct {
	id     int    // mount ID, unique on the host (field 1)
	dev    devNum // st_dev of the file system (field 3)
	point  string // mount point, unescaped (field 5)
	fstype string
	source string // unescaped
}

// devNum is a device's major:minor.
type devNum struct{ major, minor uint32 }

func (d devNum) String() string { return strconv.Itoa(int(d.major)) + ":" + strconv.Itoa(int(d.minor)) }

// parseDevNum reads "MAJOR:MINOR" in base 10 (mountinfo, sysfs) or 16
// (/proc/PID/maps).
func parseDevNum(s string, base int) (devNum, bool) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return devNum{}, false
	}
	ma, err1 := strconv.ParseUint(a, base, 32)
	mi, err2 := strconv.ParseUint(b, base, 32)
	if err1 != nil || err2 != nil {
		return devNum{}, false
	}
	return devNum{uint32(ma), uint32(mi)}, true
}

// parseMountInfo reads a mountinfo table, in its order (a mount stacked
// on another comes after it). Lines it cannot read are skipped: the
// format has been stable since Linux 2.6.26, so there are none.
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)  (8) (9)    (10)        (11)
func parseMountInfo(table string) []mount {
	var ms []mount
	for _, line := range strings.Split(table, "\n") {
		// Fields never hold a space (it is escaped as \040), so " - "
		// only ends the optional fields.
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 2 {
			continue
		}
		id, err := strconv.Atoi(f[0])
		dev, ok := parseDevNum(f[2], 10)
		if err != nil || !ok {
			continue
		}
		ms = append(ms, mount{id: id, dev: dev, point: unescapeOctal(f[4]), fstype: g[0], source: unescapeOctal(g[1])})
	}
	return ms
}

// readMounts reads this process's mount table.
func readMounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountInfo(string(b)), nil
}

// topAt returns the mount that shows at point (the last one there).
func topAt(ms []mount, point string) (mount, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].point == point {
			return ms[i], true
		}
	}
	return mount{}, false
}

// toUnmount returns what must come off, last mounted first, for our
// file system at point to go: everything at point or below it mounted
// since our first mount there (stacked on ours, or inside it), and ours.
// What was mounted before it stays: a mount ours is stacked on, or one
// in a directory that ours covers. nil when ours is not mounted there.
func toUnmount(ms []mount, point string, ours func(mount) bool) []mount {
	first := -1
	for i, m := range ms {
		if m.point == point && ours(m) {
			first = i
			break
		}
	}
	if first < 0 {
		return nil
	}
	var out []mount
	for i := len(ms) - 1; i >= first; i-- {
		if within(ms[i].point, point) {
			out = append(out, ms[i])
		}
	}
	return out
}

// unescapeOctal decodes the kernel's \ooo escapes (space, tab, newline,
// backslash) in mountinfo fields.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
