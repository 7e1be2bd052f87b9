package main

import (
	"encoding/json"
	"strings"
	"testing"

	"tandem/internal/node"
	"tandem/internal/state"
	"tandem/internal/volume"
)

// The volume table says how this node's filesystem resource attaches the
// volume, and says nothing of it where no filesystem resource is.
func TestPrintVolumesShowsTheAttachMode(t *testing.T) {
	s := node.Status{Volumes: []node.VolumeStatus{
		{Name: "pg", Group: "db", Replicas: map[string]state.Replica{}, Local: &volume.Status{}, Attach: "nbdfuse+loop"},
		{Name: "raw", Group: "san", Replicas: map[string]state.Replica{}, Local: &volume.Status{}},
		{Name: "www", Group: "web", Replicas: map[string]state.Replica{}, Local: &volume.Status{}, Attach: "none"},
	}}
	var b strings.Builder
	printVolumes(&b, s)
	lines := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	if !strings.Contains(lines["pg"], "filesystem attached by nbdfuse+loop") {
		t.Errorf("pg: %q", lines["pg"])
	}
	if !strings.Contains(lines["www"], "filesystem cannot attach it") {
		t.Errorf("www: %q", lines["www"])
	}
	if strings.Contains(lines["raw"], "attached") {
		t.Errorf("raw has no filesystem resource: %q", lines["raw"])
	}
	js, err := json.Marshal(s.Volumes[0])
	if err != nil || !strings.Contains(string(js), `"attach":"nbdfuse+loop"`) {
		t.Errorf("JSON: %s %v", js, err)
	}
	if js, _ := json.Marshal(s.Volumes[1]); strings.Contains(string(js), "attach") {
		t.Errorf("JSON of a volume without a filesystem resource: %s", js)
	}
}
