//go:build !linux

package filesystem

import (
	"errors"
	"os/exec"
)

// The agent needs Linux: mount tables, loop devices, FUSE, nbd.
var errNotLinux = errors.New("filesystem: mounting needs Linux")

func detachProcess(*exec.Cmd)             {}
func unmountPath(string) error            { return errNotLinux }
func isBusy(error) bool                   { return false }
func isNotMounted(error) bool             { return false }
func signalProcess(int, bool) error       { return errNotLinux }
func clearLoop(string, func() bool) error { return errNotLinux }
func procLinkMount(string) (int, bool)    { return 0, false }
