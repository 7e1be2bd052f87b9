package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// BuildTandem builds the tandem binary of the module that contains the
// working directory into a fresh directory (named so that RemoveStale
// finds it if this process dies) and returns its path and a cleanup.
func BuildTandem(ctx context.Context) (string, func(), error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", nil, fmt.Errorf("testbed: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", nil, fmt.Errorf("testbed: not inside the tandem module")
	}
	dir, err := os.MkdirTemp("", "ttb"+strconv.Itoa(os.Getpid())+"-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("testbed: %w", err)
	}
	bin := filepath.Join(dir, "tandem")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tandem")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("testbed: go build ./cmd/tandem: %w: %s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
