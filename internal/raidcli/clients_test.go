package raidcli

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Real NBD clients from Debian against `tandem raid serve`: nbdinfo sees
// the export, nbdcopy writes a file in and reads it back out byte for byte,
// qemu-img compares the image with the file.
func TestServeToRealClients(t *testing.T) {
	for _, p := range []string{"nbdinfo", "nbdcopy", "qemu-img"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: libnbd-bin, qemu-utils)", p)
		}
	}
	c := newCLI(t)
	c.must("create", "--level", "5", "--chunk", "16K", "--size", "12M", "--wait", "r5", c.path("m0"), c.path("m1"), c.path("m2"), c.path("m3"))
	sock := c.path("nbd.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		cmd := Command()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs([]string{"--state-dir", c.state, "serve", "r5", "--listen", "unix:" + sock})
		served <- cmd.ExecuteContext(ctx)
	}()
	waitFor(t, func() bool { return (&globals{stateDir: c.state}).control("r5") != nil })
	uri := "nbd+unix:///r5?socket=" + sock
	info, err := exec.Command("nbdinfo", "--json", uri).CombinedOutput()
	if err != nil || !strings.Contains(string(info), `"export-name": "r5"`) || !strings.Contains(string(info), `"can_multi_conn": true`) {
		t.Fatalf("nbdinfo: %v\n%s", err, info)
	}
	st := c.status("r5")
	src := c.path("src")
	data := make([]byte, st.Size)
	r := rand.New(rand.NewPCG(2, 3))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	os.WriteFile(src, data, 0o600)
	if out, err := exec.Command("nbdcopy", "--flush", src, uri).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy in: %v\n%s", err, out)
	}
	dst := c.path("dst")
	if out, err := exec.Command("nbdcopy", uri, dst).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy out: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("nbdcopy round trip differs")
	}
	// Lose a member on the live array; qemu-img still reads the same bytes.
	c.must("fail", "r5", c.path("m2"))
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare after a failure: %v\n%s", err, out)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if out := c.must("check", "r5"); !strings.Contains(out, "0 mismatches, 0 checksum errors") {
		t.Fatalf("check after serving: %s", out)
	}
}
