// Package fence owns the fence devices of issue 13 (docs/fencing.md): it
// drives fence agents through the FenceAgentAPI stdin protocol (agent, ipmi
// and exec devices), counts a node reset by its own watchdog once a wait
// has passed (Watchdog, the watchdog kind), decides a node's fence over its
// levels (Topology, a pure machine) and runs that decision against the
// devices (Fencer).
//
// It does not decide when a node is fenced (internal/fencepolicy does, and
// Fencer implements its seam) and it does not read the configuration file
// (cmd/ and internal/node build Devices from internal/config).
//
// The topology machine (topology.go) does no I/O and reads no clock; the
// agent driver (agent.go) and the Fencer (fencer.go) are the adapters.
// Anything but internal/config's parsing may import it; it imports only
// internal/clock and internal/events.
package fence
