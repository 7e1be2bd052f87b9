package filesystem

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// nsEnv marks the test binary as running in its own mount namespace.
const nsEnv = "TANDEM_FILESYSTEM_TEST_NS"

// TestMain runs the tests as root in a private mount namespace of their
// own (unshare): what they mount is then invisible to the host's mount
// namespace, so a mount namespace made meanwhile by anything else on the
// host (another test bed's agents, a service) does not copy it. A copy
// keeps the file system, and so the loop device, in use, which a stop
// rightly refuses to ignore: seen here when another session's test bed
// started while these tests had a file system mounted.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(nsEnv) == "" && os.Getenv(helperEnv) == "" {
		if _, err := exec.LookPath("unshare"); err == nil {
			cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", os.Args[0]}, os.Args[1:]...)...)
			cmd.Env = append(os.Environ(), nsEnv+"=1")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			err := cmd.Run()
			var ee *exec.ExitError
			switch {
			case err == nil:
				os.Exit(0)
			case errors.As(err, &ee) && ee.ExitCode() >= 0:
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintf(os.Stderr, "filesystem tests: unshare: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}
