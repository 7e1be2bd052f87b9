// Package watchdog owns the node's self-fencing watchdog of issue 13 item 4
// (docs/fencing.md, "Watchdog"): while the node holds a lease the agent
// feeds a watchdog; if the agent hangs or dies the machine resets before a
// lease could be granted elsewhere.
//
// Watchdog is the seam. Memory is its in-memory twin on an injected clock
// (it says when the machine would have been reset); Device is the real
// /dev/watchdog (device_linux.go: WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT,
// write-based keepalive, the magic 'V' close).
//
// Feeder is the pure policy of when to open, feed and close it (lease
// events and ticks in, actions out); the agent's adapter (internal/node,
// watchdog.go) runs its actions on a Watchdog. The package imports only
// internal/clock. Anything may import it.
package watchdog
