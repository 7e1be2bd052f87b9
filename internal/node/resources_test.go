package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/config"
	"tandem/internal/logcheck"
	"tandem/internal/vipguard"
)

// The real agents of every kind, built as the node builds them and given
// the agent's logger (node=a), log the node, group and resource once each:
// the node names the resource, the agent adds only keys of its own. Before,
// every record of an ocf resource read node=a node=a ... resource=nginx
// resource=web-nginx.
func TestResourceLogsNameEachKeyOnce(t *testing.T) {
	dir := t.TempDir()
	agentDir := filepath.Join(dir, "resource.d", "test")
	os.MkdirAll(agentDir, 0o755)
	script := "#!/bin/sh\necho \"$1 says hello\" >&2\nexit 0\n"
	if err := os.WriteFile(filepath.Join(agentDir, "Hello"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`cluster: logs
insecure: true
nodes:
  - {name: a, links: [127.0.0.21]}
  - {name: b, links: [127.0.0.22]}
witness: {name: w, links: [127.0.0.23]}
groups:
  - name: web
    resources:
      - name: svc
        exec: {command: [/bin/sh, -c, "echo started; exec sleep 60"]}
      - name: hello
        ocf: {agent: test/Hello, root: %s}
      - name: ip
        vip: {address: 10.99.0.50/24, interface: eth0}
`, dir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = dir
	log, rec := logcheck.New(t, slog.LevelDebug)
	groups, err := buildGroups(cfg, "a", vipguard.NewMem(clock.Real{}), nil, volumeAgents{}, log.With("node", "a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range groups[0].Resources[:2] { // the VIP needs a real interface
		if err := r.Agent.Start(ctx); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if err := r.Agent.Stop(ctx); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
	}
	for _, res := range []string{"svc", "hello"} {
		n := 0
		for _, l := range rec.Lines() {
			if v, _ := logcheck.Field(l, "resource"); v == res {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no record names resource=%s:\n%s", res, strings.Join(rec.Lines(), "\n"))
		}
	}
}
