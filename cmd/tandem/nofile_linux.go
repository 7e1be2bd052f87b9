package main

import "golang.org/x/sys/unix"

// openFileLimit is this process's descriptor limit (0: unknown). The Go
// runtime has already raised the soft limit to the hard one at start (and
// restores the old soft limit for the programs the agent runs, which may
// use select), so this is what the agent has to share out.
func openFileLimit() uint64 {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}
