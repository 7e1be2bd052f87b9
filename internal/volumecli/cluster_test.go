package volumecli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/events"
	"tandem/internal/replication"
	"tandem/internal/replication/link"
)

// clusterConfig is a two-node cluster with one volume, its replicas on
// loopback addresses 127.0.0.1 and 127.0.0.2 (linux routes 127/8 to lo).
func clusterConfig(t *testing.T, dir string, port int) *config.Config {
	t.Helper()
	key := filepath.Join(dir, "cluster.key")
	writeKey(t, key)
	y := fmt.Sprintf(`cluster: t
key_file: %s
state_dir: %s
port: %d
nodes:
  - {name: a, links: [127.0.0.1]}
  - {name: b, links: [127.0.0.2]}
witness: {name: w, links: [127.0.0.3]}
groups:
  - name: db
    resources:
      - volume: {name: pg}
volumes:
  - name: pg
    size: 4MiB
    replicas:
      - {node: a, backing: %s}
      - {node: b, backing: %s}
`, key, dir, port, filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img"))
	c, err := config.Parse("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Two replicas of a configured volume, each with its own state dir as on
// two machines: new backing files start UpToDate and identical (nothing
// to sync), the primary at a group's epoch replicates, the other promoted
// at the next epoch reads what was written; the control socket refuses
// role changes of a replica the cluster runs.
func TestClusterReplicas(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t) - 1 // the volume's port is the cluster's + 1
	fencer := replication.NewMemFencer()
	start := func(self string) *Replica {
		t.Helper()
		c := clusterConfig(t, filepath.Join(dir, self), port)
		c.Volumes[0].Replicas[0].Backing = filepath.Join(dir, "a.img")
		c.Volumes[0].Replicas[1].Backing = filepath.Join(dir, "b.img")
		r, err := StartReplica(ReplicaOptions{Config: c, Volume: "pg", Self: self, Fencer: fencer})
		if err != nil {
			t.Fatalf("start %s: %v", self, err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	os.MkdirAll(filepath.Join(dir, "a"), 0o700)
	os.MkdirAll(filepath.Join(dir, "b"), 0o700)
	// Both need the same key: b's config reads a's key file.
	a := start("a")
	bc := clusterConfig(t, filepath.Join(dir, "b"), port)
	bc.KeyFile = filepath.Join(dir, "a", "cluster.key")
	bc.Volumes[0].Replicas[0].Backing = filepath.Join(dir, "a.img")
	bc.Volumes[0].Replicas[1].Backing = filepath.Join(dir, "b.img")
	b, err := StartReplica(ReplicaOptions{Config: bc, Volume: "pg", Self: "b", Fencer: fencer})
	if err != nil {
		t.Fatalf("start b: %v", err)
	}
	defer b.Close()
	waitReplica(t, a, "connected, in sync", func(s string, sync string, disk string) bool {
		return s == "Connected" && disk == "UpToDate" && sync == ""
	})
	if err := a.Promote(3, false); err != nil {
		t.Fatalf("promote a at 3: %v", err)
	}
	data := bytes.Repeat([]byte("tandem!!"), 8192)
	if _, err := a.Device().WriteAt(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := a.Device().Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Device().WriteAt(data, 0); err == nil {
		t.Fatal("the secondary accepted a write")
	}
	// The agent alone changes roles.
	cl, err := (&globals{stateDir: filepath.Join(dir, "a")}).running("pg")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.call("POST", "secondary", controlRequest{}, nil); err == nil || !strings.Contains(err.Error(), "run by the cluster agent") {
		t.Fatalf("secondary through the control socket: %v", err)
	}
	if err := a.Demote(); err != nil {
		t.Fatal(err)
	}
	waitReplica(t, b, "the peer demoted", func(c, sync, disk string) bool { return c == "Connected" && disk == "UpToDate" })
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.Promote(4, false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("promote b at 4: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := make([]byte, len(data))
	if _, err := b.Device().ReadAt(got, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("b does not read what a wrote")
	}
	if VolumeUUID([]byte("k"), "t", "pg") == VolumeUUID([]byte("k"), "t", "pg2") || VolumeUUID([]byte("k"), "t", "pg") != VolumeUUID([]byte("k"), "t", "pg") {
		t.Fatal("volume UUIDs are not derived from the name")
	}
}

func waitReplica(t *testing.T, r *Replica, what string, ok func(conn, sync, disk string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := r.Status()
		if ok(s.Connection, s.Sync, s.Disk) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s: %+v", r.Name(), what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every event a replica writes to the audit log ("volume_" and the
// engine's kind, "volume_link_" and its link's) is a kind `tandem events
// --kind` accepts; a new user's `--kind volume_connected` was refused.
func TestVolumeEventKindsAreKnown(t *testing.T) {
	known := events.KnownKinds()
	want := 0
	for k := replication.EventKind(0); ; k++ {
		name := k.String()
		if strings.Contains(name, "(") || name == "" { // past the last: EventKind(n)
			break
		}
		want++
		if !slices.Contains(known, events.Kind("volume_"+name)) {
			t.Errorf("volume_%s is not a known kind", name)
		}
	}
	for k := link.EventUp; k.String() != "unknown"; k++ {
		if k == link.EventEpoch { // not reported (volume.LinkEvent)
			continue
		}
		want++
		if !slices.Contains(known, events.Kind("volume_link_"+k.String())) {
			t.Errorf("volume_link_%s is not a known kind", k)
		}
	}
	n := 0
	for _, k := range known {
		if strings.HasPrefix(string(k), "volume_") {
			n++
		}
	}
	if n != want || want < 20 {
		t.Errorf("%d volume kinds known, the engine and its link write %d", n, want)
	}
}
