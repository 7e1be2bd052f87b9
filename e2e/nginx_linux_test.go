package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/testbed"
)

// TestNginxExample runs examples/nginx as it is — group www of volume,
// xfs filesystem, VIP and nginx (Debian's nginx-light through the
// resource-agents nginx agent), on the volume www — with only the bed's
// node names, VIP, interface, backing files and paths put in: a page
// written on node1 is served through the VIP, node1 is killed, and node2
// serves the same page from its replica.
func TestNginxExample(t *testing.T) {
	for _, p := range []string{"nginx", "curl", "nbdfuse", "fusermount3", "losetup", "mkfs.xfs", "blkid", "unshare", "nsenter"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian: nginx-light, curl, nbdfuse, fuse3, xfsprogs, util-linux)", p)
		}
	}
	if _, err := os.Stat("/usr/lib/ocf/resource.d/heartbeat/nginx"); err != nil {
		t.Skip("the nginx OCF agent is not installed (Debian: resource-agents)")
	}
	cfg, err := os.ReadFile("../examples/nginx/tandem.yaml")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile("../examples/nginx/nginx-www.conf")
	if err != nil {
		t.Fatal(err)
	}
	needRoot(t)
	const mnt = "/mnt/tandem-e2e-www"
	vip := testbed.VIPAddr(0).String()
	at := strings.Index(string(cfg), "\ngroups:\n")
	if at < 0 {
		t.Fatal("examples/nginx/tandem.yaml has no groups section")
	}
	// @DIR@ is the bed's directory (testbed.Spec.Raw).
	raw := strings.NewReplacer("web1", "node1", "web2", "node2", "10.0.0.80", vip,
		"interface: eth0", "interface: "+testbed.Iface(0), "/srv/www", mnt,
		"/etc/tandem/nginx-www.conf", "@DIR@/nginx-www.conf",
		"{node: web1, backing: /dev/vg0/www}", "{node: node1, backing: @DIR@/node1/www.img}",
		"{node: web2, backing: /dev/vg0/www}", "{node: node2, backing: @DIR@/node2/www.img}",
		// 1 GiB sparse files would do too; 320 MiB (xfs's least) is enough.
		"size: 1GiB", "size: 320MiB",
	).Replace(string(cfg[at+1:]))
	if strings.Contains(raw, "/dev/vg0") || strings.Contains(raw, "/etc/tandem") || strings.Contains(raw, "web1") {
		t.Fatalf("a path or name of the example was not replaced:\n%s", raw)
	}
	r := newRun(t, testbed.Spec{Raw: raw})
	// Each agent has a /run of its own (the pid file stays as it is);
	// the log goes to the bed's directory.
	nginxConf := strings.NewReplacer("10.0.0.80", vip, "/srv/www", mnt,
		"/var/log/nginx/www-error.log", filepath.Join(r.bed.Dir, "nginx-www-error.log")).Replace(string(conf))
	if strings.Contains(nginxConf, "/var/log/") {
		t.Fatalf("a path of the example's nginx.conf was not replaced:\n%s", nginxConf)
	}
	if err := os.WriteFile(filepath.Join(r.bed.Dir, "nginx-www.conf"), []byte(nginxConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "config", "validate", r.c.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("the example on the bed does not validate: %v\n%s", err, out)
	}
	if err := r.c.Start(); err != nil {
		t.Fatal(err)
	}
	r.waitRunning("www", "node1", 120*time.Second)
	page := "served from the replicated volume " + time.Now().Format(time.RFC3339Nano) + "\n"
	r.agentSh("node1", "printf '%s' '"+page+"' > "+mnt+"/index.html && sync "+mnt+"/index.html "+mnt)
	get := func() string {
		t.Helper()
		return string(r.client("curl", "-sS", "--fail", "--max-time", "5", "http://"+vip+"/index.html"))
	}
	if got := get(); got != page {
		t.Fatalf("node1 serves %q, want %q", got, page)
	}
	f := r.bed.Kill("node1")
	r.waitRunning("www", "node2", 60*time.Second)
	if got := get(); got != page {
		t.Fatalf("after node1's kill node2 serves %q, want %q", got, page)
	}
	tk := r.waitEvent("node2", f.At, 10*time.Second, func(e events.Event) bool { return e.Kind == events.Takeover }, "the takeover event")
	t.Logf("takeover: %v", tk.Attrs)
}
