package notify

import (
	"os/exec"
	"syscall"
)

// ownGroup starts the hook in a process group of its own and makes the
// deadline kill the whole group: a shell script's children (a curl that
// hangs) go with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
