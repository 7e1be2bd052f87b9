// Package netutil owns network-namespace plumbing for root-only tests and
// the demo: named namespaces (the same ones `ip netns` manages, so whole
// tandem processes can be started inside them with NS.Command), running Go
// code inside a namespace (NS.Do), and a Lab of hosts joined by one bridge
// through veth pairs, with the bridge in a namespace of its own so the host's
// root namespace is never touched.
//
// Every name carries a caller-chosen prefix plus the creating process's pid,
// so concurrent test runs never collide and RemoveStale can delete what a
// crashed run left behind without touching a live run's namespaces.
//
// Imported by tests, by cmd (demo) and by adapters that accept a namespace
// option (resource/vip, vipguard). It imports no tandem package.
package netutil
