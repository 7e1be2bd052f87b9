package watchdog

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Device is a Linux watchdog device (/dev/watchdog, /dev/watchdog0…).
type Device struct {
	Path string // default /dev/watchdog
	// FixedTimeout: the device cannot be told its timeout (it refuses the
	// timeout ioctls); Open asks nothing and takes the timeout it is given
	// in whole seconds, as the operator states (watchdog.fixed_timeout).
	FixedTimeout bool

	// setTimeout and getTimeout are the ioctls; tests of the write path
	// replace them, as no fake device here answers watchdog ioctls.
	setTimeout func(fd int, secs int) (int, error)
	getTimeout func(fd int) (int, error)

	mu sync.Mutex
	f  *os.File
}

func ioctlSetTimeout(fd, secs int) (int, error) {
	// The driver writes back the timeout it took (some round up).
	v := secs
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, v); err != nil {
		return 0, err
	}
	return ioctlGetTimeout(fd)
}

func ioctlGetTimeout(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT) }

func (d *Device) path() string {
	if d.Path == "" {
		return "/dev/watchdog"
	}
	return d.Path
}

// Open opens the device (which arms it), sets its timeout to timeout in
// whole seconds rounded down and reads it back. A device that runs with a
// longer timeout than asked is closed with the magic close and refused:
// it would reset the machine after a lease could be granted elsewhere.
// With FixedTimeout it only opens.
func (d *Device) Open(timeout time.Duration) (time.Duration, error) {
	secs, err := WholeSeconds(timeout)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != nil {
		return 0, fmt.Errorf("watchdog: %s: already open", d.path())
	}
	set, get := d.setTimeout, d.getTimeout
	if set == nil {
		set = ioctlSetTimeout
	}
	if get == nil {
		get = ioctlGetTimeout
	}
	f, err := os.OpenFile(d.path(), os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("watchdog: %w", err)
	}
	fail := func(err error) (time.Duration, error) {
		f.Write([]byte("V")) // disarm: we will not feed it
		f.Close()
		return 0, err
	}
	if d.FixedTimeout {
		d.f = f
		return time.Duration(secs) * time.Second, nil
	}
	fd := int(f.Fd())
	if _, err := set(fd, secs); err != nil {
		return fail(fmt.Errorf("watchdog: %s: set timeout %ds (WDIOC_SETTIMEOUT): %w (is it a watchdog device? one that cannot be told its timeout needs watchdog.fixed_timeout)", d.path(), secs, err))
	}
	got, err := get(fd)
	if err != nil {
		return fail(fmt.Errorf("watchdog: %s: read timeout (WDIOC_GETTIMEOUT): %w", d.path(), err))
	}
	if got < 1 || got > secs {
		return fail(fmt.Errorf("watchdog: %s: asked for %ds, the device runs with %ds: too late to fence this node", d.path(), secs, got))
	}
	d.f = f
	return time.Duration(got) * time.Second, nil
}

// Feed writes one byte other than 'V': every watchdog driver takes a write
// as a keepalive (WDIOC_KEEPALIVE does the same, but not every fake
// device can answer an ioctl).
func (d *Device) Feed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return ErrNotOpen
	}
	if _, err := d.f.Write([]byte{0}); err != nil {
		return fmt.Errorf("watchdog: %s: feed: %w", d.path(), err)
	}
	return nil
}

// Close writes the magic 'V' and closes, which disarms drivers built
// without nowayout. With nowayout the machine still resets after the
// timeout: a planned stop must then keep feeding, or accept the reset.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return ErrNotOpen
	}
	f := d.f
	d.f = nil
	_, werr := f.Write([]byte("V"))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("watchdog: %s: magic close: %w", d.path(), werr)
	}
	if cerr != nil {
		return fmt.Errorf("watchdog: %s: close: %w", d.path(), cerr)
	}
	return nil
}
