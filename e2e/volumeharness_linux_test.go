package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/nbd"
	"tandem/internal/testbed"
	"tandem/internal/volume"
)

// The harness of the replicated-volume scenarios (volume_linux_test.go):
// a bed with the CLI run inside its hosts, the NBD clients on the client
// host, and a writer that knows which of its writes were acknowledged.

// volBed is a bed for replicated volumes: the key and every state dir and
// backing file live in dir (the test's temporary directory).
type volBed struct {
	t   *testing.T
	bed *testbed.Bed
	dir string
	key string
}

func newVolBed(t *testing.T) *volBed {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"nbdcopy", "fio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian: libnbd-bin, fio; .ci/run installs them)", tool)
		}
	}
	if out, _ := exec.Command("fio", "--enghelp").CombinedOutput(); !bytes.Contains(out, []byte("nbd")) {
		t.Fatal("this fio has no nbd engine (Debian's fio has)")
	}
	v := &volBed{t: t, dir: t.TempDir()}
	bed, err := testbed.New(context.Background(), testbed.Options{Binary: binary, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	v.bed = bed
	t.Cleanup(func() {
		for _, c := range bed.Crashes() {
			t.Errorf("CRASH: %s (its log is in the work directory)", c)
		}
		if t.Failed() {
			bed.Fail()
			v.keepAuditLogs()
		}
		if err := bed.Close(); err != nil {
			t.Errorf("tear down: %v", err)
		}
	})
	v.key = filepath.Join(v.dir, "cluster.key")
	if out, err := v.run("node1", "keygen", "--out", v.key); err != nil {
		t.Fatalf("keygen: %v: %s", err, out)
	}
	return v
}

// run runs `tandem ARGS` on host h and returns its output.
func (v *volBed) run(h string, args ...string) (string, error) {
	cmd := v.bed.Command(h, v.bed.Binary, args...)
	// Waited for here, so the parent-death signal is not needed, and it
	// would fire if the thread that forks happened to end first.
	cmd.SysProcAttr.Pdeathsig = 0
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	hung := time.AfterFunc(volWait, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	hung.Stop()
	return out.String(), err
}

// tool runs an NBD client tool on the client host and returns what it
// wrote to its standard output.
func (v *volBed) tool(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), volWait)
	defer cancel()
	cmd := v.bed.Host("client").NS.Command(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errOut.String())
	}
	return out.Bytes(), nil
}

// keepAuditLogs copies every state dir's audit log into the bed's work
// directory, which a failed run keeps.
func (v *volBed) keepAuditLogs() {
	logs, _ := filepath.Glob(filepath.Join(v.dir, "*", "events.jsonl"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			os.WriteFile(filepath.Join(v.bed.Dir, filepath.Base(filepath.Dir(l))+"-events.jsonl"), b, 0o644)
		}
	}
}

// volPair is one volume on node1 and node2 (and any impostors).
type volPair struct {
	v        *volBed
	t        *testing.T
	name     string
	linkPort int
	nbdPort  int
	uuid     string
	reps     map[string]*replica // the real replicas, by node
}

// replica is one replica's place: the host it runs on, the names it
// goes by and its files.
type replica struct {
	host, node, peer string
	stateDir         string
	backing          string
}

func (v *volBed) newPair(name string, linkPort, nbdPort int) *volPair {
	p := &volPair{v: v, t: v.t, name: name, linkPort: linkPort, nbdPort: nbdPort, reps: map[string]*replica{}}
	p.reps["node1"] = p.replica("node1", "node1", "node2", "node1")
	p.reps["node2"] = p.replica("node2", "node2", "node1", "node2")
	return p
}

func (p *volPair) replica(host, node, peer, label string) *replica {
	dir := filepath.Join(p.v.dir, p.name+"-"+label)
	return &replica{host: host, node: node, peer: peer, stateDir: dir, backing: dir + ".img"}
}

func (p *volPair) rep(node string) *replica {
	r, ok := p.reps[node]
	if !ok {
		p.t.Fatalf("no replica on %s", node)
	}
	return r
}

func (p *volPair) vol(r *replica, args ...string) (string, error) {
	return p.v.run(r.host, append([]string{"volume", "--state-dir", r.stateDir}, args...)...)
}

func (p *volPair) mustVol(r *replica, args ...string) string {
	p.t.Helper()
	out, err := p.vol(r, args...)
	if err != nil {
		p.t.Fatalf("tandem volume %s on %s: %v: %s", strings.Join(args, " "), r.host, err, out)
	}
	return out
}

// nbdAddr is where node's export listens: its link-0 address, so the
// client host reaches it.
func (p *volPair) nbdAddr(node string) string {
	return fmt.Sprintf("%s:%d", p.v.bed.Host(node).Addrs[0], p.nbdPort)
}

func (p *volPair) uri(node string) string { return "nbd://" + p.nbdAddr(node) + "/" + p.name }

// create records r's replica, with a path per link its host shares with
// the peer's.
func (p *volPair) create(r *replica, extra ...string) string {
	me, peer := p.v.bed.Host(r.host), p.v.bed.Host(r.peer)
	args := []string{"create", p.name, "--backing", r.backing, "--node", r.node, "--peer", r.peer,
		"--key", p.v.key, "--nbd", fmt.Sprintf("%s:%d", me.Addrs[0], p.nbdPort)}
	for i := range min(len(me.Addrs), len(peer.Addrs)) {
		args = append(args, "--path", fmt.Sprintf("%s:%d,%s:%d", me.Addrs[i], p.linkPort, peer.Addrs[i], p.linkPort))
	}
	return p.mustVol(r, append(args, extra...)...)
}

// createClean creates both replicas UpToDate (--assume-clean: two new,
// all-zero files), for the tests that are not about the initial sync.
func (p *volPair) createClean(extra ...string) {
	p.uuid = hex.EncodeToString(randomBytes(16, uint64(time.Now().UnixNano())))
	for _, n := range []string{"node1", "node2"} {
		p.create(p.reps[n], append([]string{"--uuid", p.uuid, "--size", fmt.Sprint(volSize), "--assume-clean"}, extra...)...)
	}
}

// startClean creates both replicas UpToDate, brings them up and makes
// node1 primary (no --force: it is UpToDate).
func (p *volPair) startClean(extra ...string) {
	p.t.Helper()
	p.createClean(extra...)
	p.up("node1")
	p.up("node2")
	p.waitStatus("node1", "connected", func(s volume.Status) bool { return s.Connection == "Connected" })
	if out, err := p.primary("node1", false); err != nil {
		p.t.Fatalf("promoting node1: %v: %s", err, out)
	}
}

func (p *volPair) up(node string) {
	p.t.Helper()
	p.upReplica(p.rep(node))
}

// upReplica starts `tandem volume up` for r and waits until its control
// socket answers.
func (p *volPair) upReplica(r *replica) {
	p.t.Helper()
	label := filepath.Base(r.stateDir)
	log, err := os.OpenFile(filepath.Join(p.v.bed.Dir, label+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer log.Close()
	cmd := p.v.bed.Command(r.host, p.v.bed.Binary, "volume", "--state-dir", r.stateDir, "up", p.name)
	cmd.Stdout, cmd.Stderr = log, log
	if err := p.v.bed.Start(cmd); err != nil {
		p.t.Fatal(err)
	}
	p.waitStatusOf(r, "up", func(s volume.Status) bool { return s.Role != "down" })
}

// down stops a replica with `tandem volume down` and waits until its
// process has exited (its listening ports are free again).
func (p *volPair) down(r *replica) {
	p.t.Helper()
	p.mustVol(r, "down", p.name)
	match := "--state-dir " + r.stateDir + " up"
	for deadline := time.Now().Add(volWait); p.v.bed.ServiceRunning(r.host, match); {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: tandem volume up still runs after down", r.stateDir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// primary runs `tandem volume primary` on node.
func (p *volPair) primary(node string, force bool) (string, error) {
	args := []string{"primary", p.name}
	if force {
		args = append(args, "--force")
	}
	return p.vol(p.rep(node), args...)
}

func (p *volPair) statusOf(r *replica) (volume.Status, error) {
	out, err := p.vol(r, "status", p.name, "--json")
	if err != nil {
		return volume.Status{}, fmt.Errorf("status: %w: %s", err, out)
	}
	var all []volume.Status
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 1 {
		return volume.Status{}, fmt.Errorf("status --json: %v: %s", err, out)
	}
	return all[0], nil
}

func (p *volPair) status(node string) volume.Status {
	p.t.Helper()
	s, err := p.statusOf(p.rep(node))
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func (p *volPair) waitStatus(node, what string, ok func(volume.Status) bool) volume.Status {
	p.t.Helper()
	return p.waitStatusOf(p.rep(node), what, ok)
}

// waitStatusOf polls r's status --json until ok.
func (p *volPair) waitStatusOf(r *replica, what string, ok func(volume.Status) bool) volume.Status {
	p.t.Helper()
	deadline := time.Now().Add(volWait)
	for {
		s, err := p.statusOf(r)
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s on %s: not %s within %v: %s", p.name, r.host, what, volWait, describe(s, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(s volume.Status, err error) string {
	if err != nil {
		return err.Error()
	}
	var ev []string
	for _, e := range s.Events {
		ev = append(ev, e.Kind+" "+e.Message)
	}
	return fmt.Sprintf("role %s disk %s peer %s/%s connection %s sync %q out of sync %d epoch %d; events: %s",
		s.Role, s.Disk, s.PeerRole, s.PeerDisk, s.Connection, s.Sync, s.OutOfSync, s.Epoch, strings.Join(ev, "; "))
}

func (p *volPair) waitEvent(node string, since time.Time, kind, message string) events.Event {
	p.t.Helper()
	return p.waitEventOf(p.rep(node), since, kind, message)
}

// waitEventOf waits for an event in r's audit log at or after since, of
// kind (any if "") whose message matches the regular expression message.
func (p *volPair) waitEventOf(r *replica, since time.Time, kind, message string) events.Event {
	p.t.Helper()
	deadline := time.Now().Add(volWait)
	for {
		if e, ok := p.findEvent(r, since, kind, message); ok {
			return e
		}
		if time.Now().After(deadline) {
			all, _ := events.ReadFile(filepath.Join(r.stateDir, "events.jsonl"), events.Filter{Since: since})
			var seen []string
			for _, e := range all {
				seen = append(seen, string(e.Kind)+" "+e.Message)
			}
			p.t.Fatalf("%s on %s: no %s event matching %q within %v; since then: %s", p.name, r.host, kind, message, volWait, strings.Join(seen, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *volPair) findEvent(r *replica, since time.Time, kind, message string) (events.Event, bool) {
	re := regexp.MustCompile(message)
	f := events.Filter{Since: since, Subject: p.name}
	if kind != "" {
		f.Kinds = []events.Kind{events.Kind(kind)}
	}
	all, _ := events.ReadFile(filepath.Join(r.stateDir, "events.jsonl"), f)
	for _, e := range all {
		if re.MatchString(e.Message) {
			return e, true
		}
	}
	return events.Event{}, false
}

// inSync: prim is primary and sec its secondary, connected, both
// UpToDate, nothing to resync.
func inSync(prim, sec volume.Status) bool {
	return prim.Role == "Primary" && sec.Role == "Secondary" &&
		prim.Connection == "Connected" && sec.Connection == "Connected" &&
		prim.Sync == "" && sec.Sync == "" && prim.Disk == "UpToDate" && sec.Disk == "UpToDate" &&
		prim.PeerDisk == "UpToDate" && prim.OutOfSync == 0 && sec.OutOfSync == 0
}

func (p *volPair) waitInSync(prim, sec string) {
	p.t.Helper()
	deadline := time.Now().Add(volWait)
	for {
		a, errA := p.statusOf(p.rep(prim))
		b, errB := p.statusOf(p.rep(sec))
		if errA == nil && errB == nil && inSync(a, b) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not in sync within %v:\n  %s: %s\n  %s: %s", p.name, volWait, prim, describe(a, errA), sec, describe(b, errB))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rejoin waits until old is prim's secondary again and in sync. A split
// brain (the old primary went on alone after outdating its peer, as a
// standalone pair's does) is settled as the manual says: the new
// primary's data is kept (resolve --discard OLD), then connect on both.
// It reports whether it had to.
func (p *volPair) rejoin(prim, old string, since time.Time) bool {
	p.t.Helper()
	resolved := false
	deadline := time.Now().Add(volWait)
	for {
		a, errA := p.statusOf(p.rep(prim))
		b, errB := p.statusOf(p.rep(old))
		if errA == nil && errB == nil && inSync(a, b) {
			return resolved
		}
		if !resolved {
			e, ok := p.findEvent(p.rep(prim), since, "volume_split_brain", "")
			if !ok {
				e, ok = p.findEvent(p.rep(old), since, "volume_split_brain", "")
			}
			if ok {
				p.t.Logf("split brain reported: %s; resolving: %s's changes are discarded", e.Message, old)
				// b may predate the handshake: ask again.
				if s, err := p.statusOf(p.rep(old)); err == nil && s.Role == "Primary" {
					p.t.Errorf("%s is still primary after meeting %s at a newer epoch", old, prim)
					p.mustVol(p.rep(old), "secondary", p.name)
				}
				p.mustVol(p.rep(prim), "resolve", p.name, "--discard", old)
				for _, n := range []string{prim, old} {
					if out, err := p.vol(p.rep(n), "connect", p.name); err != nil {
						p.t.Logf("connect on %s: %v: %s", n, err, out)
					}
				}
				resolved = true
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not rejoin %s within %v:\n  %s: %s\n  %s: %s", old, prim, volWait, prim, describe(a, errA), old, describe(b, errB))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verify runs `tandem volume verify --wait` on node and requires that
// nothing differs.
func (p *volPair) verify(node string) {
	p.t.Helper()
	out := p.mustVol(p.rep(node), "verify", p.name, "--wait")
	if !strings.Contains(out, fmt.Sprintf("finished: %d.0 MiB checked, 0 B out of sync", volSize>>20)) {
		p.t.Errorf("verify: %s", strings.TrimSpace(out))
	}
	p.t.Logf("%s", strings.TrimSpace(out))
}

// nbdcopyIn writes data at the start of node's export with nbdcopy.
func (p *volPair) nbdcopyIn(node string, data []byte) {
	p.t.Helper()
	f := filepath.Join(p.v.dir, "in.img")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.v.tool("nbdcopy", "--flush", f, p.uri(node)); err != nil {
		p.t.Fatal(err)
	}
}

// readExport reads the whole volume through node's export with nbdcopy.
func (p *volPair) readExport(node string) []byte {
	p.t.Helper()
	out, err := p.v.tool("nbdcopy", p.uri(node), "-")
	if err != nil {
		p.t.Fatal(err)
	}
	if len(out) != volSize {
		p.t.Fatalf("nbdcopy read %d bytes from %s, want %d", len(out), node, volSize)
	}
	return out
}

// fio runs fio's verified random writes over [off, off+size) of node's
// export.
func (p *volPair) fio(node string, off, size int64) {
	p.t.Helper()
	out, err := p.v.tool("fio", "--name=verify", "--ioengine=nbd", "--uri="+p.uri(node),
		fmt.Sprintf("--offset=%d", off), fmt.Sprintf("--size=%d", size), "--rw=randwrite", "--bs=4k", "--iodepth=16",
		"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0")
	if err != nil || !bytes.Contains(out, []byte("err= 0")) {
		p.t.Fatalf("fio: %v\n%s", err, out)
	}
}

// dataArea reads the data of node's replica from its backing file (the
// metadata follows it).
func (p *volPair) dataArea(node string) []byte {
	p.t.Helper()
	return readHead(p.t, p.rep(node).backing, volSize)
}

// readHead reads the first n bytes of a replica's backing file: its data
// area.
func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// notServing checks that node's export is closed (a secondary serves
// nothing, docs/volumes.md), allowing its daemon time to close it.
func (p *volPair) notServing(node string) {
	p.t.Helper()
	for deadline := time.Now().Add(volWait); ; time.Sleep(100 * time.Millisecond) {
		err := p.v.bed.Host("client").NS.Do(func() error {
			c, err := net.DialTimeout("tcp", p.nbdAddr(node), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Errorf("%s, %s, still accepts NBD connections on %s", node, p.status(node).Role, p.nbdAddr(node))
			return
		}
	}
}

// client connects tandem's NBD client to node's export from the client
// host.
func (p *volPair) client(node string) *nbd.Client {
	p.t.Helper()
	c, _ := p.dial(node)
	return c
}

func (p *volPair) dial(node string) (*nbd.Client, net.Conn) {
	p.t.Helper()
	var nc net.Conn
	err := p.v.bed.Host("client").NS.Do(func() error {
		var err error
		nc, err = net.DialTimeout("tcp", p.nbdAddr(node), 5*time.Second)
		return err
	})
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := nbd.NewClient(nc, p.name)
	if err != nil {
		nc.Close()
		p.t.Fatal(err)
	}
	return c, nc
}

// stampWriter writes blocks [0, blocks) of bs bytes from base in order,
// one at a time, each once, each with data of its own, and records when
// each was acknowledged: with one write in flight, whatever happens to the
// server the acknowledged ones are a prefix, and at most the next is in
// doubt.
type stampWriter struct {
	id     uint64
	base   int64
	blocks int
	bs     int
	pace   time.Duration
	c      *nbd.Client
	nc     net.Conn
	done   chan struct{}

	mu   sync.Mutex
	sent int
	acks []time.Time
	err  error
}

func (p *volPair) startWriter(node string, id uint64, base int64, blocks, bs int, pace time.Duration) *stampWriter {
	p.t.Helper()
	w := &stampWriter{id: id, base: base, blocks: blocks, bs: bs, pace: pace, done: make(chan struct{})}
	w.c, w.nc = p.dial(node)
	go w.run()
	return w
}

func (w *stampWriter) run() {
	defer close(w.done)
	for i := range w.blocks {
		w.mu.Lock()
		w.sent = i + 1
		w.mu.Unlock()
		_, err := w.c.WriteAt(w.block(i), w.off(i))
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		w.acks = append(w.acks, time.Now())
		w.mu.Unlock()
		if w.pace > 0 {
			time.Sleep(w.pace) // a client's think time, not a wait for a state
		}
	}
}

// block is write i's data: its id and index, then bytes no other write has.
func (w *stampWriter) block(i int) []byte {
	b := randomBytes(w.bs, w.id<<32|uint64(i))
	copy(b, fmt.Sprintf("tandem e2e writer %d block %d\n", w.id, i))
	return b
}

func (w *stampWriter) off(i int) int64 { return w.base + int64(i)*int64(w.bs) }

// waitAcks waits until n writes are acknowledged.
func (w *stampWriter) waitAcks(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(volWait); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		got, err := len(w.acks), w.err
		w.mu.Unlock()
		if got >= n {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("writer %d: %d of %d writes acknowledged: %v", w.id, got, n, err)
		}
	}
}

// wait waits until every write is acknowledged.
func (w *stampWriter) wait(t *testing.T) {
	t.Helper()
	w.waitDone(t, volWait)
	if w.err != nil {
		t.Fatalf("writer %d: %v", w.id, w.err)
	}
	w.c.Close()
}

// waitDone waits until the writer has stopped, by error or done.
func (w *stampWriter) waitDone(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(within):
		w.stop()
		t.Fatalf("writer %d still writing after %v", w.id, within)
	}
}

// stop drops the connection (a write in flight is not acknowledged) and
// waits until the writer has stopped.
func (w *stampWriter) stop() {
	w.nc.Close()
	<-w.done
}

func (w *stampWriter) written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent
}

// expect is the image a replica must hold: before, with every write
// acknowledged before fence, and the one in flight then if got holds it
// (it may or may not have reached the replica). It also returns how many
// acknowledged writes that is.
func (w *stampWriter) expect(before, got []byte, fence time.Time) ([]byte, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	want := bytes.Clone(before)
	acked := 0
	for acked < len(w.acks) && w.acks[acked].Before(fence) {
		acked++
	}
	for i := range min(acked+1, w.sent) {
		off, data := w.off(i), w.block(i)
		if i == acked && !bytes.Equal(got[off:off+int64(w.bs)], data) {
			break
		}
		copy(want[off:], data)
	}
	return want, acked
}

// randomBytes is n bytes of a ChaCha8 stream seeded with seed.
func randomBytes(n int, seed uint64) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// firstDiff says where a and b first differ.
func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d (4 KiB block %d, region %d)", i, i/block, i/volRegion)
		}
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d bytes against %d", len(a), len(b))
	}
	return "no difference"
}
