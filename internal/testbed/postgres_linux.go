package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PostgreSQL on the bed (issue 12): Debian's postgresql-15 on a replicated
// ext4 volume, run by an exec resource (docs/storage.md says why not the
// pgsql OCF agent), and the client that commits through the VIP.

// PostgresBin is where Debian's postgresql-15 keeps its programs.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// PostgresPort is the port the group's PostgreSQL listens on, on the VIP.
const PostgresPort = 5432

// HavePostgres says what of postgresql-15 is missing (nil: nothing).
func HavePostgres() error {
	for _, p := range []string{"postgres", "initdb", "pg_isready", "pgbench"} {
		if _, err := os.Stat(filepath.Join(PostgresBin, p)); err != nil {
			return fmt.Errorf("%s not installed (Debian: postgresql-15, postgresql-client-15)", filepath.Join(PostgresBin, p))
		}
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return errors.New("no postgres user (Debian: postgresql-15 makes it)")
	}
	for _, p := range []string{"setpriv", "unshare"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s not installed (Debian: util-linux)", p)
		}
	}
	return nil
}

// pgStartScript is the service's command (run as sh -c SCRIPT pg-start
// MOUNT SETTINGS): it makes the database cluster on the volume's first
// start (initdb into a temporary directory, renamed once complete, so a
// start cut short leaves nothing half made; SETTINGS appended to its
// postgresql.conf), then execs postgres as the postgres user. On the bed
// every host shares one kernel's PID and SysV IPC namespaces, so postgres
// gets its own: otherwise the new primary's postgres would find the frozen
// old one's PID (in postmaster.pid on the replicated volume) alive and its
// shared memory attached, and refuse to start, which separate machines
// never see.
const pgStartScript = `set -eu
bin=` + PostgresBin + `
data="$1/data"
if [ ! -e "$data/PG_VERSION" ]; then
	rm -rf "$data.new"
	mkdir -m 700 "$data.new"
	chown postgres:postgres "$data.new"
	setpriv --reuid=postgres --regid=postgres --clear-groups -- "$bin/initdb" --no-sync -A trust -U postgres -E UTF8 --locale=C -D "$data.new" >/dev/null
	echo "host all all 0.0.0.0/0 trust" >> "$data.new/pg_hba.conf"
	printf '%s\n' "$2" >> "$data.new/postgresql.conf"
	sync -f "$data.new"
	mv "$data.new" "$data"
	sync -f "$1"
fi
exec unshare --pid --ipc --fork --kill-child -- setpriv --reuid=postgres --regid=postgres --clear-groups -- "$bin/postgres" -D "$data"
`

// pgSettings go into postgresql.conf when the cluster is made. Durability
// is PostgreSQL's default (fsync, synchronous_commit and full page writes
// on); the WAL is kept small enough for a small test volume. After a
// crash postgres makes the whole data directory durable before its WAL
// replay: by default an fsync of every file, each a flush of the
// replicated volume (1.6 s of a 3.5 s takeover in the bench);
// recovery_init_sync_method = syncfs (PostgreSQL 14 and later, Linux)
// does it with one syncfs of the file system.
const pgSettings = `listen_addresses = '*'
unix_socket_directories = ''
max_connections = 40
shared_buffers = 32MB
max_wal_size = 96MB
min_wal_size = 32MB
recovery_init_sync_method = syncfs
log_min_messages = warning
`

// PostgresGroup returns a group of volume (512MiB), ext4 file system at
// mount, PostgreSQL (its data in mount/data, made on the first start) and
// VIP.
func PostgresGroup(name, mount string) GroupSpec {
	return GroupSpec{
		Name: name, Volume: "pg", VolumeSize: "512MiB", Mount: mount, Port: PostgresPort,
		Service: []string{"/bin/sh", "-c", pgStartScript, "pg-start", mount, pgSettings},
		// Ready means accepting connections, not only listening: postgres
		// listens while it replays its WAL.
		Check: []string{filepath.Join(PostgresBin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(PostgresPort), "-U", "postgres", "-t", "2"},
		// A fast shutdown: TERM would wait for every client to disconnect.
		StopSignal: "INT",
	}
}

// PGClient is the database client running on the client host: `tandem
// bench-pg-client`, committing through the VIP and recording each commit
// it saw acknowledged in a file.
type PGClient struct {
	bed  *Bed
	cmd  *exec.Cmd
	addr string
	Out  string // the history, JSON lines
	once sync.Once

	mu sync.Mutex
	// What was read of Out so far: a bench polls the history every few
	// ms while it grows to hundreds of thousands of lines.
	read    int64
	tail    []byte
	history []PGRecord
	commits int
}

// StartPGClient starts the client against vip with clients sessions.
func (b *Bed) StartPGClient(vip netip.Addr, clients int) (*PGClient, error) {
	addr := netip.AddrPortFrom(vip, PostgresPort).String()
	out := filepath.Join(b.Dir, fmt.Sprintf("pg-client-%d.jsonl", time.Now().UnixNano()))
	cmd := b.Command("client", b.Binary, "bench-pg-client", "--addr", addr, "--clients", strconv.Itoa(clients), "--out", out)
	logf, err := os.Create(out + ".log")
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := b.start(cmd); err != nil {
		return nil, err
	}
	return &PGClient{bed: b, cmd: cmd, addr: addr, Out: out}, nil
}

// refresh reads what the client appended since the last call.
func (p *PGClient) refresh() error {
	f, err := os.Open(p.Out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, p.read, 1<<40))
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	p.read += int64(len(b))
	b = append(p.tail, b...)
	end := bytes.LastIndexByte(b, '\n') + 1 // a line still being written waits
	recs, err := ReadPGHistory(bytes.NewReader(b[:end]))
	if err != nil {
		return err
	}
	p.tail = append([]byte(nil), b[end:]...)
	for _, r := range recs {
		if r.Seq != 0 {
			p.commits++
		}
	}
	p.history = append(p.history, recs...)
	return nil
}

// History returns what the client recorded so far (the caller must not
// change it).
func (p *PGClient) History() ([]PGRecord, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.refresh()
	return p.history, err
}

// Since returns the records of the history from about t on: every record
// at or after t and some before it (the file is in the order the client's
// sessions wrote, which is their time order give or take a second).
func (p *PGClient) Since(t time.Time) ([]PGRecord, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.refresh()
	h := p.history
	i := len(h)
	for i > 0 && h[i-1].At >= t.Add(-time.Second).UnixNano() {
		i--
	}
	return h[i:], err
}

// Commits counts the commits recorded so far.
func (p *PGClient) Commits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refresh()
	return p.commits
}

// Stop ends the client (SIGTERM) and waits for it.
func (p *PGClient) Stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		for deadline := time.Now().Add(5 * time.Second); alive(p.cmd.Process.Pid) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// Verify reads, through the VIP from the client host, which commits the
// database holds, and returns those of the history recorded before it
// asked that are missing (lost transactions) and how many it checked.
func (p *PGClient) Verify(ctx context.Context) (lost []int64, checked int, err error) {
	history, err := p.History()
	if err != nil {
		return nil, 0, err
	}
	ranges, err := p.bed.PGRanges(ctx, p.addr)
	if err != nil {
		return nil, 0, err
	}
	for _, r := range history {
		if r.Seq != 0 {
			checked++
		}
	}
	return PGLost(history, ranges), checked, nil
}

// pgRangesWait bounds how long PGRanges retries: a database that cannot
// answer for that long after a failover has failed again.
const pgRangesWait = 60 * time.Second

// PGRanges asks the database at addr, from the client host, for the runs
// of committed sequence numbers, retrying while it is not reachable (a
// failover under way) for up to pgRangesWait.
func (b *Bed) PGRanges(ctx context.Context, addr string) ([][2]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, pgRangesWait)
	defer cancel()
	var last error
	for try := 1; ctx.Err() == nil; try++ {
		out, err := b.Command("client", b.Binary, "bench-pg-client", "--addr", addr, "--ranges").Output()
		if err == nil {
			return ParsePGRanges(out)
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		if try == 3 {
			b.logf("testbed: the committed rows at %s: still failing after %d tries: %v", addr, try, err)
		}
		last = err
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return nil, fmt.Errorf("testbed: the committed rows at %s: %w (last: %v)", addr, context.Cause(ctx), last)
}

// LocalPostgres is PostgreSQL on the machine's own disk, not replicated:
// the baselines of the storage benchmark's pgbench ratios.
type LocalPostgres struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
	// loop is the loop device of a baseline on ext4 over a file ("" for
	// a directory), mounted at dir/mnt.
	loop string
	// nbdkit and nbdfuse serve the file of a LocalNBD baseline.
	nbdkit, nbdfuse *exec.Cmd
}

// LocalDisk is where a baseline PostgreSQL keeps its data.
type LocalDisk int

const (
	LocalDir  LocalDisk = iota // a directory of the disk
	LocalLoop                  // ext4 on a loop device over a file
	// LocalNBD: ext4 on a loop device over nbdfuse's file, served by
	// nbdkit's file plugin from a file of the disk: the volume's attach
	// path on this kernel (no nbd module), with a third-party NBD server
	// and no replication.
	LocalNBD
)

// StartLocalPostgres makes a cluster in a new directory beside the bed's
// (the disk the replicas' backing files are on) and runs it on host h at
// port, as the bed runs its daemons; it returns once it accepts
// connections. With onLoop the cluster is on ext4 on a loop device over a
// file in that directory: the block-device path of the group's file
// system without FUSE, NBD or replication.
func (b *Bed) StartLocalPostgres(ctx context.Context, h string, port int, disk LocalDisk) (*LocalPostgres, error) {
	dir, err := os.MkdirTemp(filepath.Dir(b.Dir), b.Prefix+"-pglocal-")
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	lp := &LocalPostgres{dir: dir, Addr: netip.AddrPortFrom(b.Host(h).Addrs[0], uint16(port)).String()}
	root := dir
	if disk != LocalDir {
		if root, err = lp.mountLoop(ctx, disk == LocalNBD); err != nil {
			lp.Stop()
			return nil, err
		}
	}
	data := filepath.Join(root, "data")
	if err := initLocalCluster(ctx, root, data, port); err != nil {
		lp.Stop()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(b.Dir, fmt.Sprintf("pglocal-%d.log", port)))
	if err != nil {
		lp.Stop()
		return nil, err
	}
	defer logf.Close()
	lp.cmd = b.Command(h, "setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--", filepath.Join(PostgresBin, "postgres"), "-D", data)
	lp.cmd.Stdout, lp.cmd.Stderr = logf, logf
	if err := b.start(lp.cmd); err != nil {
		lp.cmd = nil
		lp.Stop()
		return nil, err
	}
	err = waitFor(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		return b.Command(h, filepath.Join(PostgresBin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port)).Run() == nil, nil
	}, "the local PostgreSQL to accept connections")
	if err != nil {
		lp.Stop()
		return nil, err
	}
	return lp, nil
}

// initLocalCluster makes the baseline's cluster in data (dir is handed to
// the postgres user), with the group's settings and its own port.
func initLocalCluster(ctx context.Context, dir, data string, port int) error {
	pg, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	out, err := exec.CommandContext(ctx, "setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--",
		filepath.Join(PostgresBin, "initdb"), "--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-D", data).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testbed: initdb for the local baseline: %v: %s", err, lastLines(string(out), 5))
	}
	appendTo := func(name, text string) error {
		f, err := os.OpenFile(filepath.Join(data, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(text)
		return errors.Join(err, f.Close())
	}
	err = errors.Join(appendTo("pg_hba.conf", "host all all 0.0.0.0/0 trust\n"),
		appendTo("postgresql.conf", pgSettings+fmt.Sprintf("port = %d\n", port)))
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return exec.CommandContext(ctx, "sync", "-f", data).Run()
}

// mountLoop makes ext4 on a loop device over a 512 MiB file in lp.dir and
// mounts it at lp.dir/mnt.
func (lp *LocalPostgres) mountLoop(ctx context.Context, viaNBD bool) (string, error) {
	img, mnt := filepath.Join(lp.dir, "disk.img"), filepath.Join(lp.dir, "mnt")
	if err := os.Chmod(lp.dir, 0o755); err != nil { // postgres goes through it to mnt
		return "", fmt.Errorf("testbed: %w", err)
	}
	run := func(name string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("testbed: %s %v: %v: %s", name, args, err, lastLines(string(out), 3))
		}
		return strings.TrimSpace(string(out)), nil
	}
	f, err := os.Create(img)
	if err == nil {
		err = errors.Join(f.Truncate(512<<20), f.Close())
	}
	if err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	if _, err := run("mkfs.ext4", "-q", "-F", img); err != nil {
		return "", err
	}
	file := img
	if viaNBD {
		if file, err = lp.serveNBD(ctx, img); err != nil {
			return "", err
		}
	}
	dev, err := run("losetup", "--find", "--show", file)
	if err != nil {
		return "", err
	}
	lp.loop = dev
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	if _, err := run("mount", dev, mnt); err != nil {
		return "", err
	}
	return mnt, nil
}

// serveNBD serves img with nbdkit's file plugin on a unix socket and
// attaches it with nbdfuse, as the filesystem resource does a volume's
// export; it returns nbdfuse's file.
func (lp *LocalPostgres) serveNBD(ctx context.Context, img string) (string, error) {
	sock, fuseDir := filepath.Join(lp.dir, "nbd.sock"), filepath.Join(lp.dir, "fuse")
	if err := os.Mkdir(fuseDir, 0o755); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	lp.nbdkit = exec.Command("nbdkit", "--foreground", "--unix", sock, "file", img)
	if err := startReady(ctx, lp.nbdkit, sock, "nbdkit"); err != nil {
		return "", err
	}
	pid := filepath.Join(lp.dir, "nbdfuse.pid")
	lp.nbdfuse = exec.Command("nbdfuse", "-P", pid, filepath.Join(fuseDir, "disk"), "nbd+unix:///?socket="+sock)
	if err := startReady(ctx, lp.nbdfuse, pid, "nbdfuse"); err != nil {
		return "", err
	}
	return filepath.Join(fuseDir, "disk"), nil
}

// startReady starts cmd and waits until the file ready exists (its
// socket, or the pid file it writes once it serves). A cmd that did not
// start is left with no Process, which Stop skips.
func startReady(ctx context.Context, cmd *exec.Cmd, ready, what string) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testbed: %s: %w", what, err)
	}
	return waitFor(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(ready)
		return err == nil, nil
	}, "%s to serve", what)
}

// Stop stops the baseline (a fast shutdown), takes its file system down
// and removes its directory.
func (lp *LocalPostgres) Stop() {
	if lp.cmd != nil {
		lp.cmd.Process.Signal(syscall.SIGINT)
		for deadline := time.Now().Add(10 * time.Second); alive(lp.cmd.Process.Pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		lp.cmd.Process.Kill()
	}
	if lp.loop != "" {
		exec.Command("umount", filepath.Join(lp.dir, "mnt")).Run()
		exec.Command("losetup", "-d", lp.loop).Run()
	}
	if lp.nbdfuse != nil && lp.nbdfuse.Process != nil {
		fuseDir := filepath.Join(lp.dir, "fuse")
		// The loop device's detach may hold the file a moment.
		for deadline := time.Now().Add(10 * time.Second); exec.Command("fusermount3", "-u", fuseDir).Run() != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		lp.nbdfuse.Process.Kill()
		lp.nbdfuse.Wait()
	}
	if lp.nbdkit != nil && lp.nbdkit.Process != nil {
		lp.nbdkit.Process.Kill()
		lp.nbdkit.Wait()
	}
	os.RemoveAll(lp.dir)
}

var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// Pgbench runs pgbench's TPC-B-like load from the client host against
// addr for d with clients sessions (the tables made first, scale 1) and
// returns its transactions per second.
func (b *Bed) Pgbench(ctx context.Context, addr string, clients int, d time.Duration, initialize bool) (float64, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, err
	}
	conn := []string{"-h", ap.Addr().String(), "-p", strconv.Itoa(int(ap.Port())), "-U", "postgres"}
	if initialize {
		args := append([]string{"-i", "-q", "-s", "1"}, conn...)
		if out, err := b.Command("client", filepath.Join(PostgresBin, "pgbench"), append(args, "postgres")...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("testbed: pgbench -i at %s: %v: %s", addr, err, lastLines(string(out), 5))
		}
	}
	args := append([]string{"-n", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(int(d.Seconds()))}, conn...)
	out, err := b.Command("client", filepath.Join(PostgresBin, "pgbench"), append(args, "postgres")...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("testbed: pgbench at %s: %v: %s", addr, err, lastLines(string(out), 5))
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("testbed: pgbench at %s printed no tps: %s", addr, lastLines(string(out), 5))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
