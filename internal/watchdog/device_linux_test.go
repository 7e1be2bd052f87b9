package watchdog

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var _ Watchdog = (*Device)(nil)

// fifo makes a FIFO standing for /dev/watchdog and opens its reading end:
// what the code writes to the "device" is read back. A FIFO answers no
// watchdog ioctl (ENOTTY), so the ioctl path is tested for its refusal
// here; with softdog it is tried as docs/fencing.md says.
func fifo(t *testing.T) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return p, r
}

func readAll(t *testing.T, r *os.File) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 64)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil || n == 0 {
			if err != nil && err != io.EOF && !os.IsTimeout(err) && !strings.Contains(err.Error(), "resource temporarily unavailable") {
				t.Fatal(err)
			}
			return out
		}
	}
}

func TestDeviceNotAWatchdogIsRefusedAndDisarmed(t *testing.T) {
	p, r := fifo(t)
	d := &Device{Path: p}
	_, err := d.Open(5 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "WDIOC_SETTIMEOUT") || !strings.Contains(err.Error(), "is it a watchdog device") {
		t.Fatalf("open of a FIFO: %v", err)
	}
	if got := readAll(t, r); !bytes.Equal(got, []byte("V")) {
		t.Fatalf("refused device got %q, want the magic close", got)
	}
	if err := d.Feed(); err != ErrNotOpen {
		t.Fatalf("feed after a refused open: %v", err)
	}
}

func TestDeviceFeedsAndMagicCloses(t *testing.T) {
	p, r := fifo(t)
	var asked int
	d := &Device{Path: p,
		setTimeout: func(fd, secs int) (int, error) { asked = secs; return secs, nil },
		getTimeout: func(fd int) (int, error) { return asked, nil },
	}
	got, err := d.Open(2900 * time.Millisecond)
	if err != nil || got != 2*time.Second || asked != 2 {
		t.Fatalf("open: %v %v (asked %ds)", got, err, asked)
	}
	if _, err := d.Open(time.Second); err == nil {
		t.Fatal("opened twice")
	}
	for i := 0; i < 3; i++ {
		if err := d.Feed(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); !bytes.Equal(got, []byte{0, 0, 0, 'V'}) {
		t.Fatalf("device saw %q, want three keepalives and the magic close", got)
	}
	if err := d.Close(); err != ErrNotOpen {
		t.Fatalf("second close: %v", err)
	}
}

func TestDeviceWithALongerTimeoutIsRefused(t *testing.T) {
	p, r := fifo(t)
	d := &Device{Path: p,
		setTimeout: func(fd, secs int) (int, error) { return 60, nil },
		getTimeout: func(fd int) (int, error) { return 60, nil }, // a driver that ignores the request
	}
	_, err := d.Open(5 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "runs with 60s") {
		t.Fatalf("open: %v", err)
	}
	if got := readAll(t, r); !bytes.Equal(got, []byte("V")) {
		t.Fatalf("refused device got %q, want the magic close", got)
	}
}

func TestDeviceMissing(t *testing.T) {
	d := &Device{Path: filepath.Join(t.TempDir(), "none")}
	if _, err := d.Open(5 * time.Second); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("open of a missing device: %v", err)
	}
}
