//go:build !linux

package proc

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
)

var errUnsupported = errors.New("process groups are supported on Linux only")

// Prepare only makes cancelling kill the leader: without process groups the
// leader's children may survive.
func Prepare(cmd *exec.Cmd) {}

// Signal is unsupported off Linux.
func Signal(pgid int, sig syscall.Signal) error { return errUnsupported }

// Members is unsupported off Linux.
func Members(pgid int) ([]int, error) { return nil, errUnsupported }

// ParseSignal knows only the portable signals off Linux.
func ParseSignal(name string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "TERM", "15":
		return syscall.SIGTERM, nil
	case "KILL", "9":
		return syscall.SIGKILL, nil
	case "INT", "2":
		return syscall.SIGINT, nil
	}
	return 0, errUnsupported
}
