package testbed

import (
	"os"
	"testing"
	"time"

	"tandem/internal/config"
)

// TestAuditKeptRun runs the audit again on a kept work directory:
//
//	TANDEM_AUDIT_DIR=/tmp/ttb…-… go test -run TestAuditKeptRun -v ./internal/testbed/
//
// It prints the lease spans and every problem; without the variable it
// skips.
func TestAuditKeptRun(t *testing.T) {
	dir := os.Getenv("TANDEM_AUDIT_DIR")
	if dir == "" {
		t.Skip("set TANDEM_AUDIT_DIR to a kept work directory")
	}
	in, err := ReadKeptRun(dir, config.DefaultLease, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("faults:\n%s", FaultLog(in.Faults))
	for _, s := range LeaseSpans(in) {
		t.Logf("span: %s %s", s.Group, s)
	}
	for _, p := range CheckAudit(in) {
		t.Error(p)
	}
}
