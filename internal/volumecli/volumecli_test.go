package volumecli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/keyfile"
	"tandem/internal/nbd"
	"tandem/internal/volume"
)

// run runs `tandem volume ARGS` in process and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeKey(t *testing.T, path string) {
	t.Helper()
	k, err := keyfile.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Write(path, k, false); err != nil {
		t.Fatal(err)
	}
}

func TestCreateReportsEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	_, err := run(t, "--state-dir", dir, "create", "v", "--path", "127.0.0.1:1,nonsense", "--mode", "fast",
		"--split-brain", "coin", "--key", filepath.Join(dir, "missing.key"), "--size", "12Q")
	if err == nil {
		t.Fatal("create with bad flags succeeded")
	}
	for _, want := range []string{"--backing is required", "--node is required", "--peer is required", `path "127.0.0.1:1,nonsense"`,
		`mode "fast"`, `split-brain policy "coin"`, "--key", `bad size "12Q"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(volumeDir(dir)); err == nil {
		t.Error("a failed create left a record")
	}
	if _, err := run(t, "--state-dir", dir, "create", "../x"); err == nil || !strings.Contains(err.Error(), "invalid volume name") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := parsePath("0.0.0.0:7000,127.0.0.2:7000"); err == nil || !strings.Contains(err.Error(), "every interface") {
		t.Errorf("a wildcard listen address was taken: %v", err)
	}
}

// node is one node's side of a volume, run in process.
type node struct {
	dir, name, nbd string
	cancel         context.CancelFunc
	done           chan error
}

func (n *node) up(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	cmd := Command()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"--state-dir", n.dir, "--log-level", "error", "up", "v"})
	go func() { n.done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for dialControl(n.dir, "v") == nil {
		select {
		case err := <-n.done:
			t.Fatalf("%s: up: %v", n.name, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: up did not open its control socket", n.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { n.stop(t) })
}

func (n *node) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("%s: up returned %v", n.name, err)
	}
	n.cancel = nil
}

func (n *node) status(t *testing.T) volume.Status {
	t.Helper()
	out, err := run(t, "--state-dir", n.dir, "status", "--json", "v")
	if err != nil {
		t.Fatalf("%s: status: %v\n%s", n.name, err, out)
	}
	var s []volume.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s) != 1 {
		t.Fatalf("%s: status --json: %v\n%s", n.name, err, out)
	}
	return s[0]
}

func waitStatus(t *testing.T, n *node, what string, cond func(volume.Status) bool) volume.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := n.status(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s: %+v", n.name, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// twoNodes creates volume v on nodes a and b (loopback, one port each).
func twoNodes(t *testing.T, keyB string, sizeB string) (*node, *node) {
	t.Helper()
	root := t.TempDir()
	key := filepath.Join(root, "key")
	writeKey(t, key)
	if keyB == "" {
		keyB = key
	}
	pa, pb := freePort(t), freePort(t)
	a := &node{dir: filepath.Join(root, "a"), name: "a", nbd: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	b := &node{dir: filepath.Join(root, "b"), name: "b", nbd: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	out, err := run(t, "--state-dir", a.dir, "create", "v", "--backing", filepath.Join(root, "a.img"), "--size", "16M",
		"--node", "a", "--peer", "b", "--path", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", pa, pb), "--key", key, "--nbd", a.nbd)
	if err != nil {
		t.Fatalf("create a: %v\n%s", err, out)
	}
	rec, err := loadRecord(a.dir, "v")
	if err != nil {
		t.Fatal(err)
	}
	if sizeB == "" {
		sizeB = fmt.Sprint(rec.Size)
	}
	out, err = run(t, "--state-dir", b.dir, "create", "v", "--backing", filepath.Join(root, "b.img"), "--size", sizeB, "--uuid", rec.UUID,
		"--node", "b", "--peer", "a", "--path", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", pb, pa), "--key", keyB, "--nbd", b.nbd)
	if err != nil {
		t.Fatalf("create b: %v\n%s", err, out)
	}
	return a, b
}

func TestTwoNodesReplicateThroughNBD(t *testing.T) {
	a, b := twoNodes(t, "", "")
	a.up(t)
	b.up(t)
	waitStatus(t, a, "connected", func(s volume.Status) bool { return s.Connection == "Connected" })
	if _, err := run(t, "--state-dir", a.dir, "primary", "v"); err == nil || !strings.Contains(err.Error(), "not UpToDate") {
		t.Fatalf("an Inconsistent replica was promoted without --force: %v", err)
	}
	if _, err := run(t, "--state-dir", a.dir, "primary", "v", "--force"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, "initial sync", func(s volume.Status) bool { return s.Disk == "UpToDate" && s.Sync == "" })
	c, err := nbd.Dial(context.Background(), "tcp", a.nbd, "v")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("tandem volume "), 1<<16)
	if _, err := c.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := nbd.Dial(context.Background(), "tcp", b.nbd, "v"); err == nil {
		t.Error("the secondary serves the volume over NBD")
	}
	if _, err := run(t, "--state-dir", a.dir, "down", "v"); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Errorf("down of a primary without --force: %v", err)
	}
	// Switch roles: a secondary, b primary; b serves a's data.
	if _, err := run(t, "--state-dir", a.dir, "secondary", "v"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, "a secondary", func(s volume.Status) bool { return s.PeerRole == "Secondary" })
	if _, err := run(t, "--state-dir", b.dir, "primary", "v"); err != nil {
		t.Fatal(err)
	}
	c, err = nbd.Dial(context.Background(), "tcp", b.nbd, "v")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := c.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("b does not serve what was written through a")
	}
	if out, err := run(t, "--state-dir", b.dir, "verify", "v", "--wait"); err != nil || !strings.Contains(out, "0 B out of sync") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	out, err := run(t, "--state-dir", b.dir, "status", "v")
	if err != nil || !strings.Contains(out, "Primary") || !strings.Contains(out, "in sync") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	// Events reached the audit log.
	log, _ := os.ReadFile(filepath.Join(b.dir, "events.jsonl"))
	for _, k := range []string{"volume_connected", "volume_resync_finished", "volume_promoted", "volume_verify_finished"} {
		if !bytes.Contains(log, []byte(k)) {
			t.Errorf("audit log lacks %s", k)
		}
	}
	var metrics []byte
	c2 := dialControl(b.dir, "v")
	resp, err := c2.hc.Get("http://volume/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`tandem_volume_primary{volume="v"} 1`, `tandem_volume_connected{volume="v"} 1`,
		`tandem_volume_disk_state{state="UpToDate",volume="v"} 1`, "tandem_replication_link_"} {
		if !bytes.Contains(metrics, []byte(m)) {
			t.Errorf("metrics lack %s", m)
		}
	}
	a.stop(t)
	b.stop(t)
	out, err = run(t, "--state-dir", a.dir, "status", "v")
	if err != nil || !strings.Contains(out, "not up on this node") || !strings.Contains(out, "UpToDate") {
		t.Fatalf("status of a stopped volume: %v\n%s", err, out)
	}
}

func TestWrongKeyAndSizeAreRefused(t *testing.T) {
	for _, c := range []struct{ name, key, size, want string }{
		{"key", "other", "", "another cluster key"},
		{"size", "", "8M", "size differs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := ""
			if c.key != "" {
				key = filepath.Join(t.TempDir(), "other.key")
				writeKey(t, key)
			}
			a, b := twoNodes(t, key, c.size)
			a.up(t)
			b.up(t)
			s := waitStatus(t, a, "a refusal", func(s volume.Status) bool {
				for _, e := range s.Events {
					if strings.Contains(e.Message, c.want) || strings.Contains(e.Kind, c.want) {
						return true
					}
				}
				return false
			})
			if s.Connection == "Connected" {
				t.Fatalf("connected despite the %s mismatch", c.name)
			}
		})
	}
}

// A primary deposed by a newer epoch (its peer was promoted while they were
// apart) stops its NBD export, as 'secondary' does: only a primary serves.
func TestDeposedPrimaryStopsItsExport(t *testing.T) {
	a, b := twoNodes(t, "", "")
	a.up(t)
	b.up(t)
	waitStatus(t, a, "connected", func(s volume.Status) bool { return s.Connection == "Connected" })
	if _, err := run(t, "--state-dir", a.dir, "primary", "v", "--force"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, "initial sync", func(s volume.Status) bool { return s.Disk == "UpToDate" && s.Sync == "" })
	if out, err := run(t, "--state-dir", a.dir, "disconnect", "v"); err != nil || !strings.Contains(out, "volume v: disconnect: done") {
		t.Fatalf("disconnect said %q: %v", out, err)
	}
	waitStatus(t, b, "disconnected", func(s volume.Status) bool { return s.Connection != "Connected" })
	if _, err := run(t, "--state-dir", b.dir, "primary", "v"); err != nil {
		t.Fatal(err)
	}
	c, err := nbd.Dial(context.Background(), "tcp", a.nbd, "v")
	if err != nil {
		t.Fatalf("a, still primary on its own, does not serve: %v", err)
	}
	c.Close()
	if _, err := run(t, "--state-dir", a.dir, "connect", "v"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a, "deposed", func(s volume.Status) bool { return s.Role == "Secondary" })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := nbd.Dial(context.Background(), "tcp", a.nbd, "v")
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the deposed primary still serves NBD 10 s after it was deposed")
		}
	}
	if c, err := nbd.Dial(context.Background(), "tcp", b.nbd, "v"); err != nil {
		t.Errorf("the new primary does not serve: %v", err)
	} else {
		c.Close()
	}
}
