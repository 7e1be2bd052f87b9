package raidcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/nbd"
	"tandem/internal/raid"
)

type cli struct {
	t     *testing.T
	state string
	dir   string
}

func (c *cli) run(args ...string) (string, error) {
	out, _, err := c.runStderr(args...)
	return out, err
}

// runStderr runs a command and returns its standard output and error.
func (c *cli) runStderr(args ...string) (string, string, error) {
	cmd := Command()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"--state-dir", c.state}, args...))
	err := cmd.Execute()
	if errOut.Len() > 0 {
		c.t.Logf("stderr of %v:\n%s", args, errOut.String())
	}
	return out.String(), errOut.String(), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return out
}

func (c *cli) path(n string) string { return filepath.Join(c.dir, n) }

func (c *cli) status(name string) raid.Status {
	c.t.Helper()
	var sts []raid.Status
	if err := json.Unmarshal([]byte(c.must("status", "--json", name)), &sts); err != nil || len(sts) != 1 {
		c.t.Fatalf("status json: %v", err)
	}
	return sts[0]
}

func newCLI(t *testing.T) *cli {
	d := t.TempDir()
	return &cli{t: t, state: filepath.Join(d, "state"), dir: d}
}

func TestCreateStatusCheckOffline(t *testing.T) {
	c := newCLI(t)
	out := c.must("create", "--level", "5", "--chunk", "16K", "--size", "8M", "--wait", "--spare", c.path("s0"), "r5", c.path("m0"), c.path("m1"), c.path("m2"))
	if !strings.Contains(out, "created r5: raid5, 3 members") {
		t.Fatalf("create: %s", out)
	}
	if _, err := os.Stat(filepath.Join(c.state, "raid", "r5.json")); err != nil {
		t.Fatal(err)
	}
	st := c.status("r5")
	if st.State != "clean" || st.InSync != 3 || len(st.Members) != 4 {
		t.Fatalf("status: %+v", st)
	}
	// Bad input writes nothing.
	if _, err := c.run("create", "--level", "6", "--size", "8M", "bad", c.path("x0"), c.path("x1")); err == nil || !strings.Contains(err.Error(), "at least 4") {
		t.Fatalf("too few members: %v", err)
	}
	if _, err := c.run("create", "--level", "1", "--size", "8M", "dup", c.path("y0"), c.path("y0")); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("same member twice: %v", err)
	}
	if _, err := c.run("create", "--level", "1", "--force=false", "other", c.path("m0"), c.path("m1")); err == nil || !strings.Contains(err.Error(), "already belongs") {
		t.Fatalf("member of another array: %v", err)
	}
	if _, err := c.run("create", "--level", "7", "--size", "8M", "lvl", c.path("z0"), c.path("z1")); err == nil {
		t.Fatal("unknown level accepted")
	}
	// The same file under two names.
	if _, err := c.run("create", "--level", "1", "--size", "8M", "alias", c.path("w0"), c.dir+"/./w0"); err == nil || !strings.Contains(err.Error(), "same file") {
		t.Fatalf("one file under two names: %v", err)
	}
	// A member too small, named; a member holding other data (here, the
	// text of a file system's worth of bytes) is not overwritten silently.
	if err := os.WriteFile(c.path("tiny"), make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("create", "--level", "1", "--size", "8M", "small", c.path("v0"), c.path("tiny")); err == nil || !strings.Contains(err.Error(), c.path("tiny")) || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("member too small: %v", err)
	}
	used := make([]byte, 8<<20)
	copy(used[1024:], "ext4 superblock, say")
	if err := os.WriteFile(c.path("used"), used, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("create", "--level", "1", "--size", "8M", "over", c.path("u0"), c.path("used")); err == nil || !strings.Contains(err.Error(), "holds data") {
		t.Fatalf("member holding data: %v", err)
	}
	if b, err := os.ReadFile(c.path("used")); err != nil || !bytes.Equal(b, used) {
		t.Fatalf("the member holding data was changed: %v", err)
	}
	for _, p := range []string{"x0", "x1", "y0", "z0", "z1", "w0", "v0", "u0"} {
		if _, err := os.Stat(c.path(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bad input left %s behind (%v)", p, err)
		}
	}
	if out := c.must("check", "r5"); !strings.Contains(out, "0 mismatches, 0 checksum errors") {
		t.Fatalf("check: %s", out)
	}
	// Offline fail: the spare takes over and rebuilds before the command ends.
	c.must("fail", "r5", c.path("m1"))
	st = c.status("r5")
	if st.State != "clean" || st.Members[1].Name != c.path("s0") {
		t.Fatalf("after fail: %+v", st)
	}
	// Paths instead of a name, one of them foreign: reported and left out.
	c.must("create", "--level", "1", "--size", "8M", "r1", c.path("o0"), c.path("o1"))
	out, errOut, err := c.runStderr("status", c.path("m0"), c.path("m2"), c.path("s0"), c.path("o0"))
	if err != nil || !strings.Contains(out, "r5 : clean") || !strings.Contains(out, "[3/3]") {
		t.Fatalf("status by paths (r5's three members after the fail, and a foreign one): %v\n%s", err, out)
	}
	if !strings.Contains(errOut, c.path("o0")) || !strings.Contains(errOut, "left out") {
		t.Fatalf("status by paths did not report the foreign member: %q", errOut)
	}
	c.must("assemble", "--scan")
	// Another array named r5 (made under another state dir), assembled here
	// by its paths: the recorded r5 keeps its record.
	before, err := loadRecord(c.state, "r5")
	if err != nil {
		t.Fatal(err)
	}
	other := &cli{t: t, state: c.state + "-other", dir: c.dir}
	other.must("create", "--level", "1", "--size", "8M", "r5", c.path("q0"), c.path("q1"))
	c.must("assemble", c.path("q0"), c.path("q1"))
	if after, err := loadRecord(c.state, "r5"); err != nil || after.UUID != before.UUID {
		t.Fatalf("the record of r5 after assembling another r5 by paths: %+v, %v (was %s)", after, err, before.UUID)
	}
}

func TestServeAndManageALiveArray(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "6", "--chunk", "16K", "--size", "8M", "--wait", "r6", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3"))
	_, stop := c.serve("r6")
	sock := c.path("r6.nbd")
	ctx := context.Background()
	cl, err := nbd.Dial(ctx, "unix", sock, "r6")
	if err != nil {
		t.Fatal(err)
	}
	size := cl.Size()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if _, err := cl.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	// Two members fail on the live array; then one comes back with add.
	c.must("fail", "r6", c.path("m1"))
	c.must("fail", "r6", c.path("m3"))
	if st := c.status("r6"); st.State != "degraded" || st.InSync != 2 {
		t.Fatalf("after two fails: %+v", st)
	}
	got := make([]byte, size)
	if _, err := cl.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("degraded read over NBD: %v", err)
	}
	c.must("remove", "r6", c.path("m3"))
	c.must("add", "r6", c.path("m3"))
	waitFor(t, func() bool { return c.status("r6").InSync == 3 })
	if _, err := c.run("add", "r6", c.path("nonexistent")); err == nil {
		t.Fatal("add of a missing path succeeded")
	}
	// The rebuild rate of the served array, set from the command line.
	if out := c.must("rate", "r6", "50M"); !strings.Contains(out, "52428800 bytes/s") {
		t.Fatalf("rate: %s", out)
	}
	if _, err := c.run("rate", "r6", "fast"); err == nil {
		t.Fatal("rate accepted a bad size")
	}
	if _, err := c.run("rate", "nosuch", "1M"); err == nil || !strings.Contains(err.Error(), "not being served") {
		t.Fatalf("rate of an array not served: %v", err)
	}
	c.must("rate", "r6", "0")
	// Replace an active member while it stays in service.
	if err := os.WriteFile(c.path("n0"), make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("replace", "r6", c.path("m0"), "--with", c.path("n0"))
	waitFor(t, func() bool {
		st := c.status("r6")
		return st.InSync == 3 && st.Members[0].Name == c.path("n0") && st.Members[0].State == "in_sync"
	})
	if _, err := cl.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read over NBD after the replace: %v", err)
	}
	// Assembling the served array again, by its members' paths, would
	// write superblocks under the server: refused.
	if _, err := c.run("assemble", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3")); err == nil || !strings.Contains(err.Error(), "being served") {
		t.Fatalf("assemble by paths of a served array: %v", err)
	}
	if _, err := c.run("serve", "r6", "--listen", "unix:"+c.path("again.sock")); err == nil || !strings.Contains(err.Error(), "being served") {
		t.Fatalf("a second serve of the same array: %v", err)
	}
	// Another server on the same socket, or on a path that is not a socket:
	// refused, and the file is left alone.
	other := Command()
	other.SetOut(&bytes.Buffer{})
	other.SetErr(&bytes.Buffer{})
	c.must("create", "--level", "1", "--size", "8M", "r1", c.path("o0"), c.path("o1"))
	other.SetArgs([]string{"--state-dir", c.state, "serve", "r1", "--listen", "unix:" + sock})
	if err := other.Execute(); err == nil || !strings.Contains(err.Error(), "another server is listening") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	notSock := c.path("notes.txt")
	if err := os.WriteFile(notSock, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	other.SetArgs([]string{"--state-dir", c.state, "serve", "r1", "--listen", "unix:" + notSock})
	if err := other.Execute(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(notSock); string(b) != "keep me" {
		t.Fatal("serve removed a regular file at its --listen path")
	}
	// A member of another array, or a file holding data, is not taken
	// without --force (it would degrade that array, or overwrite the data).
	if _, err := c.run("add", "r6", c.path("o0")); err == nil || !strings.Contains(err.Error(), `belongs to array "r1"`) {
		t.Fatalf("add of another array's member: %v", err)
	}
	if err := os.WriteFile(c.path("data"), append(make([]byte, 4096), bytes.Repeat([]byte("x"), 8<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run("replace", "r6", c.path("m0"), "--with", c.path("data")); err == nil || !strings.Contains(err.Error(), "holds data") {
		t.Fatalf("replace with a file holding data: %v", err)
	}
	if st := c.status("r1"); st.State == "degraded" || st.State == "failed" || st.InSync != 2 {
		t.Fatalf("r1 after the refused add: %+v", st)
	}
	cl.Close()
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond) // waits on a real server process, not a unit under a fake clock
	}
}

// TestBenchRunsEveryPart runs `raid bench` small, so the command that
// produces docs/benchmarks.md's figures is known to work; it proves the
// machinery, not the figures (those are benchmarks, see docs/raid.md).
func TestBenchRunsEveryPart(t *testing.T) {
	c := newCLI(t)
	out := c.must("bench", "--dir", c.dir, "--size", "4M", "--levels", "raid1,raid6", "--rebuild", "raid5", "--rounds", "1", "--no-nbd")
	for _, want := range []string{"raid1   x2: write ", "raid6   x6: write ", "raid6 parity", "rebuild raid5", "baseline raw copy"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	if _, err := c.run("bench", "--dir", c.dir, "--levels", "raid7", "--no-nbd"); err == nil || !strings.Contains(err.Error(), `unknown level "raid7"`) {
		t.Errorf("bench with an unknown level: %v", err)
	}
}
