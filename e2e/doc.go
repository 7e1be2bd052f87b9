// Package e2e is tandem's scenario suite: every test builds a test bed of
// network namespaces (internal/testbed), runs the real tandem binary on
// node1, node2 and the witness, injects real faults and checks, from a
// client host, that the service fails over in time and never answers from
// two nodes at once, and that the audit logs agree. The scenarios mirror
// Pacemaker's CTS tests (docs/testing.md). The tests need root; without it
// they skip, saying so.
package e2e
