package watchdog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pty opens a pseudo-terminal and returns its terminal end's path, a
// character device standing for /dev/watchdog, and its master end, which
// reads what the code writes to the "device". The kernel has no softdog
// and no CUSE here, so nothing fakes the watchdog ioctls: a terminal
// answers them with ENOTTY, which tests the refusal with the real ioctl;
// the keepalive writes and the magic close are tested for real, on a
// device opened the way a watchdog is (docs/fencing.md, "Trying it with
// softdog", tries the ioctls).
func pty(t *testing.T) (string, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/dev/pts/%d", n)
	// Raw: what is written reaches the master byte for byte.
	s, err := os.OpenFile(p, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ICANON
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // keeps the settings while the test runs
	return p, m
}

// readN reads n bytes from the master, or fails after a generous deadline.
func readN(t *testing.T, m *os.File, n int) []byte {
	t.Helper()
	if err := m.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	for len(out) < n {
		k, err := m.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			t.Fatalf("read %q of %d bytes: %v", out, n, err)
		}
	}
	return out
}

func TestDeviceOnATerminalRefusesAndDisarms(t *testing.T) {
	p, m := pty(t)
	d := &Device{Path: p}
	_, err := d.Open(5 * time.Second)
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "WDIOC_SETTIMEOUT") || !strings.Contains(err.Error(), "fixed_timeout") {
		t.Fatalf("open of a terminal: %v, want the kernel's ENOTTY to WDIOC_SETTIMEOUT", err)
	}
	if got := readN(t, m, 1); !bytes.Equal(got, []byte("V")) {
		t.Fatalf("refused device got %q, want the magic close", got)
	}
	if err := d.Feed(); err != ErrNotOpen {
		t.Fatalf("feed after a refused open: %v", err)
	}
}

func TestDeviceFixedTimeoutFeedsAndMagicClosesATerminal(t *testing.T) {
	p, m := pty(t)
	d := &Device{Path: p, FixedTimeout: true}
	got, err := d.Open(2900 * time.Millisecond)
	if err != nil || got != 2*time.Second {
		t.Fatalf("open: %v %v, want 2s (whole seconds, rounded down)", got, err)
	}
	for i := 0; i < 3; i++ {
		if err := d.Feed(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, m, 4); !bytes.Equal(got, []byte{0, 0, 0, 'V'}) {
		t.Fatalf("device saw %q, want three keepalives and the magic close", got)
	}
}

func TestDeviceFeedFailsWhenTheDeviceGoes(t *testing.T) {
	p, m := pty(t)
	d := &Device{Path: p, FixedTimeout: true}
	if _, err := d.Open(time.Second); err != nil {
		t.Fatal(err)
	}
	m.Close() // the terminal hangs up: writes fail with EIO
	if err := d.Feed(); err == nil || !strings.Contains(err.Error(), "feed") {
		t.Fatalf("feed of a hung-up device: %v", err)
	}
	d.Close()
}
