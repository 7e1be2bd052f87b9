// Package testbed owns tandem's multi-host test bed: hosts are network
// namespaces (node1, node2, a witness and a client) joined by two bridges,
// one per heartbeat link; the real tandem binary (or keepalived, as a
// yardstick) runs on them; faults are real (SIGKILL, SIGSTOP/SIGCONT,
// nftables drops inside the namespaces, links taken down at the switch, tbf
// slow links); a checker in the client namespace probes the VIP every 10 ms,
// watches who answers ARP for it and cross-checks the cluster's audit logs.
//
// Everything a bed creates carries a prefix with the creating process's pid,
// is torn down by Close (also after a failed test), by CloseAll (on a signal
// or before a test binary's deadline) and, after a crash, by the next New,
// which removes what dead owners left behind.
//
// Imported by the e2e suite and by cmd (tandem bench failover). It uses
// internal/netutil for namespaces, internal/probe for the client, and the
// api and events packages to observe the cluster, never its internals.
package testbed
