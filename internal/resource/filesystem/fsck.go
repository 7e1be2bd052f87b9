package filesystem

// fsckCommand returns the check run before mounting a file system of
// fstype on dev, or nil when none is run (xfs: see Config.Fsck).
func fsckCommand(fstype, dev string) []string {
	if fstype == "ext4" {
		// -p (preen): replay the journal, repair what is safe without a
		// person, and stop with exit 4 at anything else.
		return []string{"e2fsck", "-p", dev}
	}
	return nil
}

// fsckVerdict is what an exit status of e2fsck means for the start.
type fsckVerdict int

const (
	fsckClean    fsckVerdict = iota // mount
	fsckRepaired                    // mount, and say what was repaired
	fsckFailed                      // do not mount: a hard failure
)

// classifyE2fsck reads e2fsck's exit status, a sum of flags (e2fsck(8)):
// 1 errors corrected, 2 corrected and the system should be rebooted
// (which matters for a mounted root file system only, never for ours),
// 4 errors left uncorrected, 8 operational error, 16 usage error, 32
// cancelled, 128 shared library error. Anything from 4 up leaves a file
// system nobody checked, so it is not mounted; a signal (code < 0) is a
// failure too.
func classifyE2fsck(code int) fsckVerdict {
	switch {
	case code == 0:
		return fsckClean
	case code > 0 && code&^3 == 0:
		return fsckRepaired
	}
	return fsckFailed
}
