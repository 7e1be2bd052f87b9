package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"tandem/internal/testbed"
)

// binary is the tandem executable built once for the whole run.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test skips with the reason
	}
	testbed.CloseOnSignal()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			testbed.CloseBefore(time.Now().Add(d))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bin, cleanup, err := testbed.BuildTandem(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binary = bin
	// TANDEM_E2E_BINARY runs the scenarios against another build (an
	// older commit, to show that a scenario fails there; a release).
	if b := os.Getenv("TANDEM_E2E_BINARY"); b != "" {
		binary = b
	}
	code := m.Run()
	testbed.CloseAll()
	cleanup()
	os.Exit(code)
}
