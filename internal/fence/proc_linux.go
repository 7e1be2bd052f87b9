//go:build linux

package fence

import (
	"os/exec"
	"syscall"
)

// inGroup runs cmd in a process group of its own and makes the context's
// cancel kill the whole group: an agent that hangs in a child (ipmitool,
// ssh) dies with it.
func inGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
