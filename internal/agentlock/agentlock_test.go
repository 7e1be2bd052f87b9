package agentlock

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestSecondAgentIsNamed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("locks only on Linux")
	}
	dir := filepath.Join(t.TempDir(), "state")
	first, err := Acquire(dir, "db1")
	if err != nil {
		t.Fatal(err)
	}
	// A second open file of the same lock, as a second process would
	// have: flock locks belong to open files, not processes.
	_, err = Acquire(dir, "db1")
	if !IsHeld(err) {
		t.Fatalf("second Acquire: %v, want HeldError", err)
	}
	want := "another tandem agent already runs for node db1 (pid " + strconv.Itoa(os.Getpid()) + ", state dir " + dir + ")"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("got %q\nwant it to say %q", err, want)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir, "db2")
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	defer again.Release()
	data, _ := os.ReadFile(filepath.Join(dir, FileName))
	if got := parse(string(data)); got.Node != "db2" || got.PID != os.Getpid() {
		t.Errorf("lock file says %+v (%q)", got, data)
	}
}

// A holder that locked but has not written its name yet is still refused.
func TestHolderNotYetWritten(t *testing.T) {
	err := (&HeldError{StateDir: "/var/lib/tandem", Holder: parse("")}).Error()
	if !strings.Contains(err, "another tandem agent already runs (pid unknown, state dir /var/lib/tandem)") {
		t.Errorf("%s", err)
	}
}
