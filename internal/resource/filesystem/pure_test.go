package filesystem

import (
	"context"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"tandem/internal/resource"
)

func TestParseMountInfo(t *testing.T) {
	table := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 7:3 / /srv/pg\040data rw,noatime shared:5 master:2 - ext4 /dev/loop3 rw
36 22 7:4 / /mnt rw - xfs /dev/loop4 rw,attr2
garbage line
37 36 7:5 / /mnt rw - ext4 /dev/loop5 rw
38 37 0:45 / /mnt/sub rw - fuse /dev/fuse rw
39 22 0:46 / /mntx rw - tmpfs tmp\134fs rw
`
	ms := parseMountInfo(table)
	if len(ms) != 6 {
		t.Fatalf("%d mounts read, want 6: %+v", len(ms), ms)
	}
	want := mount{id: 35, dev: devNum{7, 3}, point: "/srv/pg data", fstype: "ext4", source: "/dev/loop3"}
	if ms[1] != want {
		t.Errorf("escaped mount point with optional fields: %+v, want %+v", ms[1], want)
	}
	if ms[5].source != `tmp\fs` {
		t.Errorf("escaped backslash: %q", ms[5].source)
	}
	if m, ok := topAt(ms, "/mnt"); !ok || m.source != "/dev/loop5" {
		t.Errorf("the last mount on a point shows: %+v %v", m, ok)
	}
	if _, ok := topAt(ms, "/srv"); ok {
		t.Error("found a mount that is not there")
	}
}

func TestToUnmount(t *testing.T) {
	// Ours is 37 (7:5) at /mnt, stacked on a tmpfs mounted before it; a
	// submount of the tmpfs is hidden beneath ours; since ours came, a
	// submount inside it and a mount stacked on top.
	ms := parseMountInfo(`22 1 8:1 / / rw - ext4 /dev/sda1 rw
36 22 0:40 / /mnt rw - tmpfs tmpfs rw
40 36 0:41 / /mnt/old rw - tmpfs tmpfs rw
37 36 7:5 / /mnt rw - ext4 /dev/loop5 rw
38 37 0:45 / /mnt/sub rw - fuse /dev/fuse rw
41 22 0:46 / /mntx rw - tmpfs tmpfs rw
39 37 0:47 / /mnt rw - tmpfs over rw
`)
	ours := func(m mount) bool { return m.source == "/dev/loop5" }
	var ids []int
	for _, m := range toUnmount(ms, "/mnt", ours) {
		ids = append(ids, m.id)
	}
	if want := []int{39, 38, 37}; !reflect.DeepEqual(ids, want) {
		t.Errorf("unmount order: %v, want %v (not the tmpfs beneath, its submount, nor /mntx)", ids, want)
	}
	if got := toUnmount(ms, "/mntx", ours); got != nil {
		t.Errorf("nothing of ours at /mntx, yet %+v", got)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`plain`: "plain", `a\040b`: "a b", `tab\011`: "tab\t", `nl\012x`: "nl\nx",
		`back\134slash`: `back\slash`, `short\04`: `short\04`, `bad\9x9`: `bad\9x9`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClassifyE2fsck(t *testing.T) {
	for code, want := range map[int]fsckVerdict{
		0: fsckClean, 1: fsckRepaired, 2: fsckRepaired, 3: fsckRepaired,
		4: fsckFailed, 5: fsckFailed, 8: fsckFailed, 12: fsckFailed, 16: fsckFailed,
		32: fsckFailed, 128: fsckFailed, -1: fsckFailed,
	} {
		if got := classifyE2fsck(code); got != want {
			t.Errorf("e2fsck exit %d: %v, want %v", code, got, want)
		}
	}
	if c := fsckCommand("ext4", "/dev/loop3"); !reflect.DeepEqual(c, []string{"e2fsck", "-p", "/dev/loop3"}) {
		t.Errorf("ext4 check: %v", c)
	}
	if c := fsckCommand("xfs", "/dev/loop3"); c != nil {
		t.Errorf("xfs check: %v, want none (the mount replays the log)", c)
	}
}

// fakeProc builds a /proc tree: for each pid, its links (cwd, root, fd/N)
// and files (comm, maps, cmdline).
func fakeProc(procs map[string]map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{"self": {Mode: fs.ModeSymlink, Data: []byte("1")}, "meminfo": {Data: []byte("x")}}
	for pid, entries := range procs {
		for name, v := range entries {
			f := &fstest.MapFile{Data: []byte(v)}
			if name == "cwd" || name == "root" || strings.HasPrefix(name, "fd/") {
				f.Mode = fs.ModeSymlink
			}
			fsys[pid+"/"+name] = f
		}
	}
	return fsys
}

func TestFindHolders(t *testing.T) {
	// Our ext4 is mount 35 on 7:3 at /srv/pg. Mount 90 is another mount
	// namespace's file system at the same path (another node's), 22 the
	// root file system, whose /srv/pg directory mount 35 covers.
	m := mount{id: 35, dev: devNum{7, 3}, point: "/srv/pg", fstype: "ext4", source: "/dev/loop3"}
	fdinfo := func(id int) string { return fmt.Sprintf("pos:\t0\nflags:\t0100002\nmnt_id:\t%d\nino:\t12\n", id) }
	proc := fakeProc(map[string]map[string]string{
		"10": {"comm": "sleep\n", "cwd": "/srv/pg/15"},
		"11": {"comm": "chroot\n", "root": "/srv/pg"},
		"12": {"comm": "tail\n", "fd/0": "/dev/null", "fdinfo/0": fdinfo(24), "fd/1": "socket:[123]", "fdinfo/1": fdinfo(9),
			"fd/3": "/srv/pg/log", "fdinfo/3": fdinfo(35)},
		"13": {"comm": "rm\n", "fd/4": "/srv/pg/gone (deleted)", "fdinfo/4": fdinfo(35)},
		"14": {"comm": "postgres\n", "maps": "7f00-7f10 r--p 00000000 07:03 1234 /elsewhere/lib.so\n"},
		"15": {"comm": "mapper\n", "maps": "5500-5600 rw-p 00000000 00:00 0 [heap]\n7f00-7f10 r--p 00000000 07:03 99 /srv/pg/a file with spaces\n"},
		// Same paths, other mounts: another namespace's postgres, a
		// process in the directory our mount covers, a mapping of the
		// same device through another namespace's copy.
		"20": {"comm": "postgres\n", "cwd": "/srv/pg", "fd/3": "/srv/pg/base/1", "fdinfo/3": fdinfo(90),
			"maps": "7f00-7f10 r--p 00000000 07:09 5 /srv/pg/lib.so\n"},
		"21": {"comm": "covered\n", "cwd": "/srv/pg"},
		"22": {"comm": "copy\n", "maps": "7f00-7f10 r--p 00000000 07:03 99 /srv/pg/x\n"},
		"23": {"comm": "idle\n", "cwd": "/"},
	})
	links := map[string]int{
		"10/cwd": 35, "11/root": 35, "14/map_files/7f00-7f10": 35, "15/map_files/7f00-7f10": 35,
		"20/cwd": 90, "20/map_files/7f00-7f10": 90, "21/cwd": 22, "22/map_files/7f00-7f10": 91, "23/cwd": 22,
	}
	view := procView{fsys: proc, linkMount: func(name string) (int, bool) {
		id, ok := links[name]
		if !ok && (strings.HasSuffix(name, "/cwd") || strings.HasSuffix(name, "/root")) {
			return 22, true
		}
		return id, ok
	}}
	var desc []string
	for _, h := range findHolders(view, m) {
		desc = append(desc, h.String())
	}
	want := []string{
		"10 (sleep, cwd /srv/pg/15)",
		"11 (chroot, root /srv/pg)",
		"12 (tail, fd 3 /srv/pg/log)",
		"13 (rm, fd 4 /srv/pg/gone (deleted))",
		"14 (postgres, mmap /elsewhere/lib.so)", // on the mount, by another path
		"15 (mapper, mmap /srv/pg/a file with spaces)",
	}
	if !reflect.DeepEqual(desc, want) {
		t.Errorf("holders:\n got %q\nwant %q", desc, want)
	}
	if id, ok := parseMntID([]byte("pos:\t0\nflags:\t02\nino:\t3\n")); ok {
		t.Errorf("an fdinfo without mnt_id gave %d", id)
	}
}

func TestProcessesRunning(t *testing.T) {
	proc := fakeProc(map[string]map[string]string{
		"20": {"comm": "nbdfuse\n", "cmdline": "nbdfuse\x00-P\x00/s/nbdfuse.pid\x00/s/fuse/disk\x00nbd+unix:///v?socket=/x\x00"},
		"21": {"comm": "nbdfuse\n", "cmdline": "/usr/bin/nbdfuse\x00/s/fuse/disk\x00nbd://h/v\x00"},
		"22": {"comm": "nbdfuse\n", "cmdline": "nbdfuse\x00/other/fuse/disk\x00nbd://h/v\x00"},
		"23": {"comm": "vi\n", "cmdline": "vi\x00/s/fuse/disk\x00"},
		"24": {"comm": "nbdfuse\n", "cmdline": ""}, // a zombie
		"25": {"comm": "sh\n"},                     // cmdline not read: it may block
	})
	if got := processesRunning(proc, "nbdfuse", "/s/fuse/disk"); !reflect.DeepEqual(got, []int{20, 21}) {
		t.Errorf("nbdfuse processes serving /s/fuse/disk: %v, want [20 21]", got)
	}
	if got := lastArg(proc, 20); got != "nbd+unix:///v?socket=/x" {
		t.Errorf("lastArg: %q", got)
	}
}

func TestStartTicks(t *testing.T) {
	// Field 22 of /proc/PID/stat, after a command name with a space and
	// a parenthesis in it.
	tail := " S 1 2 3 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
	proc := fakeProc(map[string]map[string]string{
		"7": {"stat": "7 (nbd fuse) x)" + tail},
		"8": {"stat": "8 (short) S 1"},
	})
	if got, ok := startTicks(proc, "7"); !ok || got != 987654 {
		t.Errorf("start of 7: %d %v, want 987654", got, ok)
	}
	for _, pid := range []string{"8", "9"} {
		if got, ok := startTicks(proc, pid); ok {
			t.Errorf("start of %s read as %d", pid, got)
		}
	}
}

func TestPlanForce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cases := []struct {
		name     string
		force    time.Duration
		deadline time.Time
		want     map[time.Duration]forceStep
	}{
		{"never", 0, time.Time{}, map[time.Duration]forceStep{0: forceWait, time.Hour: forceWait}},
		{"no deadline", 5 * time.Second, time.Time{}, map[time.Duration]forceStep{
			0: forceWait, 4999 * time.Millisecond: forceWait, 5 * time.Second: forceTerm,
			5*time.Second + forceKillAfter - 1: forceTerm, 5*time.Second + forceKillAfter: forceKill}},
		{"deadline far", 5 * time.Second, at(time.Minute), map[time.Duration]forceStep{
			4 * time.Second: forceWait, 5 * time.Second: forceTerm}},
		// 10 s left of a 20 s timeout: TERM early enough that KILL and
		// the unmount fit before the deadline.
		{"deadline near", 20 * time.Second, at(10 * time.Second), map[time.Duration]forceStep{
			10*time.Second - forceReserve - 1: forceWait, 10*time.Second - forceReserve: forceTerm,
			10*time.Second - forceReserve + forceKillAfter: forceKill}},
		{"deadline already too near", 5 * time.Second, at(time.Second), map[time.Duration]forceStep{
			0: forceTerm, forceKillAfter: forceKill}},
	}
	for _, c := range cases {
		p := planForce(t0, c.force, c.deadline)
		for d, want := range c.want {
			if got := p.step(at(d)); got != want {
				t.Errorf("%s: at %v: %v, want %v", c.name, d, got, want)
			}
		}
	}
}

func TestChooseMode(t *testing.T) {
	mk := func(files, programs []string) host {
		return host{
			exists: func(p string) bool { return contains(files, p) },
			lookPath: func(n string) (string, error) {
				if contains(programs, n) {
					return "/usr/bin/" + n, nil
				}
				return "", fs.ErrNotExist
			},
		}
	}
	all := []string{"nbd-client", "nbdfuse", "losetup"}
	cases := []struct {
		name            string
		files, programs []string
		mode, note, err string
	}{
		{"kernel nbd", []string{"/sys/module/nbd", "/dev/fuse"}, all, ModeKernelNBD, "", ""},
		{"nbd devices only", []string{"/dev/nbd0"}, all, ModeKernelNBD, "", ""},
		{"no nbd module", []string{"/dev/fuse"}, all, ModeNBDFuse, "", ""},
		{"kernel nbd without nbd-client", []string{"/sys/module/nbd", "/dev/fuse"}, []string{"nbdfuse", "losetup"},
			ModeNBDFuse, "nbd-client (Debian package nbd-client) is not installed", ""},
		{"nothing", nil, nil, "", "", "the kernel has no nbd module (no /sys/module/nbd, no /dev/nbd0), and nbdfuse+loop lacks nbdfuse (Debian package libnbd-bin), losetup (Debian package mount), /dev/fuse (the fuse module)"},
		{"kernel nbd, no tools", []string{"/sys/module/nbd"}, nil, "", "nbd-client", "the kernel has nbd but nbd-client (Debian package nbd-client) is not installed, and nbdfuse+loop lacks nbdfuse"},
	}
	for _, c := range cases {
		mode, note, err := chooseMode(mk(c.files, c.programs))
		if mode != c.mode || !strings.Contains(note, c.note) || (c.note == "" && note != "") {
			t.Errorf("%s: mode %q note %q, want %q note containing %q", c.name, mode, note, c.mode, c.note)
		}
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err %v, want one containing %q", c.name, err, c.err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseSource(t *testing.T) {
	good := map[string]source{
		"nbd+unix:///pg?socket=/var/lib/tandem/volumes/pg.nbd": {socket: "/var/lib/tandem/volumes/pg.nbd", export: "pg"},
		"nbd://127.0.0.1:10900/pg":                             {host: "127.0.0.1", port: 10900, export: "pg"},
		"nbd://[::1]/a%20b":                                    {host: "::1", port: 10809, export: "a b"},
		"nbd+unix:///?socket=/s":                               {socket: "/s"},
	}
	for uri, want := range good {
		if got, err := parseSource(uri); err != nil || got != want {
			t.Errorf("parseSource(%q) = %+v, %v; want %+v", uri, got, err, want)
		}
	}
	for uri, want := range map[string]string{
		"nbd+unix:///pg":               "socket=ABSOLUTE-PATH",
		"nbd+unix:///pg?socket=rel":    "socket=ABSOLUTE-PATH",
		"nbd+unix://host/pg?socket=/s": "with a host",
		"nbd:///pg":                    "without a host",
		"nbd://h:0/pg":                 "not a TCP port",
		"nbd://h:99999/pg":             "not a TCP port",
		"nbds://h/pg":                  "TLS is not supported",
		"/dev/sdb":                     `scheme "" is not nbd`,
		"http://h/pg":                  `scheme "http"`,
	} {
		if _, err := parseSource(uri); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSource(%q): %v, want an error containing %q", uri, err, want)
		}
	}
}

// Bad input is refused by New with every problem named at once.
func TestNewRefusesBadConfig(t *testing.T) {
	ok := Config{Source: "nbd+unix:///pg?socket=/run/pg.nbd", Mount: "/srv/pg", FSType: "ext4", StateDir: "/var/lib/tandem/run/db/fs"}
	if _, err := New(ok, nil); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	cases := []struct {
		change func(*Config)
		want   []string
	}{
		{func(c *Config) { c.Mount = "srv/pg" }, []string{`mount: "srv/pg" is not an absolute path`}},
		{func(c *Config) { c.Mount = "/" }, []string{"mount: the root file system"}},
		{func(c *Config) { c.FSType = "ntfs" }, []string{`fstype: "ntfs" is not one of ext4, xfs`}},
		{func(c *Config) { c.FSType = "" }, []string{`fstype: "" is not one of`}},
		{func(c *Config) { c.Source = "" }, []string{"source: required"}},
		{func(c *Config) { c.Source = "/dev/sdb" }, []string{`source: "/dev/sdb"`}},
		{func(c *Config) { c.Options = "noatime, nodev" }, []string{"options:", "without spaces"}},
		{func(c *Config) { c.Options = "noatime,,nodev" }, []string{"options:", "empty option"}},
		{func(c *Config) { c.ForceUnmount = -time.Second }, []string{"force_unmount: -1s is negative"}},
		{func(c *Config) { c.StateDir = "" }, []string{`state dir: "" is not an absolute path`}},
		{func(c *Config) { c.StateDir = "/srv/pg/.tandem" }, []string{"state dir: /srv/pg/.tandem is under the mount point"}},
		{func(c *Config) { c.Mount, c.FSType, c.Source = "rel", "zfs", "nbds://x/y" },
			[]string{"mount:", "fstype:", "source:", "TLS"}},
	}
	for _, c := range cases {
		cfg := ok
		c.change(&cfg)
		_, err := New(cfg, nil)
		if err == nil {
			t.Errorf("%+v accepted", cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) || !strings.HasPrefix(err.Error(), "filesystem: ") {
				t.Errorf("%+v: %q, want it to say %q", cfg, err, w)
			}
		}
	}
}

// What this node lacks fails Start as a hard failure (the group can run
// on the other node), naming each program with its Debian package; New
// accepts the configuration.
func TestStartNamesMissingPrograms(t *testing.T) {
	cfg := Config{Source: "nbd+unix:///pg?socket=/run/pg.nbd", Mount: "/srv/pg", FSType: "ext4",
		Fsck: true, Mkfs: true, StateDir: t.TempDir()}
	installed := func(names ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			if contains(names, n) {
				return "/usr/bin/" + n, nil
			}
			return "", fs.ErrNotExist
		}
	}
	ctx := context.Background()
	// The kernel has nbd, nbd-client is missing: nbdfuse+loop it is.
	a, err := New(cfg, nil, withHost(host{exists: func(string) bool { return true }, lookPath: installed("nbdfuse", "losetup", "mount")}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != ModeNBDFuse {
		t.Errorf("mode %q, want %q", a.Mode(), ModeNBDFuse)
	}
	err = a.Start(ctx)
	want := "not installed: e2fsck (Debian package e2fsprogs), blkid (Debian package util-linux), mkfs.ext4 (Debian package e2fsprogs)"
	if err == nil || resource.SeverityOf(err) != resource.Hard || !strings.Contains(err.Error(), want) {
		t.Errorf("start without e2fsck, blkid, mkfs.ext4: %v, want a hard failure saying %q", err, want)
	}
	// Neither way to attach.
	a, err = New(cfg, nil, withHost(host{exists: func(string) bool { return false }, lookPath: installed()}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode() != "" {
		t.Errorf("mode %q with no way to attach", a.Mode())
	}
	err = a.Start(ctx)
	if err == nil || resource.SeverityOf(err) != resource.Hard || !strings.Contains(err.Error(), "cannot attach an NBD export") {
		t.Errorf("start with no way to attach: %v", err)
	}
}
