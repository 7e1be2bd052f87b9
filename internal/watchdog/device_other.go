//go:build !linux

package watchdog

import (
	"errors"
	"time"
)

// Device is a Linux watchdog device; elsewhere it cannot be opened.
type Device struct {
	Path         string
	FixedTimeout bool
}

var errNoDevice = errors.New("watchdog: watchdog devices are Linux only")

func (d *Device) Open(time.Duration) (time.Duration, error) { return 0, errNoDevice }
func (d *Device) Feed() error                               { return ErrNotOpen }
func (d *Device) Close() error                              { return ErrNotOpen }
