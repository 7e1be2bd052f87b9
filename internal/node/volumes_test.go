package node

import (
	"maps"
	"testing"

	"tandem/internal/state"
	"tandem/internal/volume"
)

// What the primary records of both replicas, from its engine's status: a
// secondary records nothing; the peer is UpToDate only when connected,
// in sync and with nothing out of sync.
func TestReplicaReports(t *testing.T) {
	up, out, inc := state.DiskUpToDate, state.DiskOutdated, state.DiskInconsistent
	for _, tc := range []struct {
		name string
		s    volume.Status
		want map[string]string
	}{
		{"secondary", volume.Status{Role: "Secondary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate"}, map[string]string{}},
		{"in sync", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate"}, map[string]string{"a": up, "b": up}},
		{"resyncing the peer", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "Inconsistent", Sync: "SyncSource", OutOfSync: 1 << 20}, map[string]string{"a": up, "b": inc}},
		{"connected, bits left", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate", OutOfSync: 4096}, map[string]string{"a": up}},
		{"alone, wrote", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connecting", OutOfSync: 65536}, map[string]string{"a": up, "b": out}},
		{"alone, wrote nothing", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connecting"}, map[string]string{"a": up}},
		{"own disk detached", volume.Status{Role: "Primary", Disk: "Diskless", Connection: "Connected", PeerDisk: "UpToDate"}, map[string]string{"a": inc, "b": up}},
	} {
		if got := replicaReports("a", "b", tc.s); !maps.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// What a secondary may record while its group has no holder: both
// replicas UpToDate, only when connected, both UpToDate, in sync and
// neither primary.
func TestHolderlessReports(t *testing.T) {
	up := state.DiskUpToDate
	both := map[string]string{"a": up, "b": up}
	for _, tc := range []struct {
		name string
		s    volume.Status
		want map[string]string
	}{
		{"in sync", volume.Status{Role: "Secondary", PeerRole: "Secondary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate"}, both},
		{"primary", volume.Status{Role: "Primary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate"}, nil},
		{"peer primary", volume.Status{Role: "Secondary", PeerRole: "Primary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate"}, nil},
		{"resyncing", volume.Status{Role: "Secondary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "Inconsistent", Sync: "SyncSource", OutOfSync: 1 << 20}, nil},
		{"bits left", volume.Status{Role: "Secondary", Disk: "UpToDate", Connection: "Connected", PeerDisk: "UpToDate", OutOfSync: 4096}, nil},
		{"not connected", volume.Status{Role: "Secondary", Disk: "UpToDate", Connection: "Connecting", PeerDisk: "UpToDate"}, nil},
		{"self outdated", volume.Status{Role: "Secondary", Disk: "Outdated", Connection: "Connected", PeerDisk: "UpToDate"}, nil},
	} {
		if got := holderlessReports("a", "b", tc.s); !maps.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
