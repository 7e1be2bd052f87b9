// Package volumecli owns `tandem volume`: creating a replicated volume's
// replica (metadata on its backing device, a record in the state dir),
// running it (`up`: the engine of internal/volume with its TCP link, an
// NBD export while primary, a control socket), and the commands that talk
// to a running volume through that socket (status, primary, secondary,
// connect, disconnect, verify, resolve, rate, down) or measure it (bench).
//
// It is the standalone form of replicated volumes (issue 11): the
// PeerFencer is local (localFencer), and epochs are counted per volume.
// The cluster's volume resource (issue 12) runs the same engine with raft
// as the fencer and the group's epochs. docs/volumes.md is its manual.
package volumecli
