package watchdog

import (
	"errors"
	"fmt"
	"time"
)

// Watchdog is a timer that resets the machine unless fed.
type Watchdog interface {
	// Open arms the watchdog with a timeout of at most timeout and
	// returns the timeout it really runs with (whole seconds on real
	// devices, rounded down so the machine resets no later than asked).
	Open(timeout time.Duration) (time.Duration, error)
	// Feed restarts the countdown.
	Feed() error
	// Close disarms the watchdog with the magic close ('V' then close),
	// for a planned stop. A process that dies without Close leaves the
	// watchdog armed, which is the point.
	Close() error
}

// ErrNotOpen is returned by Feed and Close before Open or after Close.
var ErrNotOpen = errors.New("watchdog: not open")

// WholeSeconds is the timeout a seconds-granular watchdog runs with for a
// requested timeout: rounded down, since a later reset than asked could
// come after a lease elsewhere. Below one second there is none.
func WholeSeconds(timeout time.Duration) (int, error) {
	s := int(timeout / time.Second)
	if s < 1 {
		return 0, fmt.Errorf("watchdog: timeout %v: a watchdog device counts whole seconds, at least 1s", timeout)
	}
	return s, nil
}

func errTimeout(d time.Duration) error {
	return fmt.Errorf("watchdog: timeout %v: must be positive", d)
}
