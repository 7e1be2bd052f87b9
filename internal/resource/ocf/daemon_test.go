package ocf

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/resource/exec/proc/proctest"
)

var (
	buildDir    string
	serverOnce  sync.Once
	serverPath  string
	serverBuild error
)

func TestMain(m *testing.M) {
	var err error
	if buildDir, err = os.MkdirTemp("", "tandem-ocf-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(buildDir)
	os.Exit(code)
}

// testServer builds the test HTTP server once per run.
func testServer(t *testing.T) string {
	serverOnce.Do(func() { serverPath, serverBuild = proctest.BuildServer(buildDir) })
	if serverBuild != nil {
		t.Fatal(serverBuild)
	}
	return serverPath
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent runs its daemon through su / as a system service")
	}
}

// body GETs url, polling until the deadline: agents like anything return
// from start before the daemon listens.
func body(t *testing.T, url string, within time.Duration) string {
	t.Helper()
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func refused(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err == nil {
		resp.Body.Close()
	}
	return err != nil
}

func TestNginxServesAndStops(t *testing.T) {
	requireRoot(t)
	requireAgent(t, "heartbeat/nginx")
	nginx := nginxBinary()
	if nginx == "" {
		t.Skip("nginx not installed (Debian package nginx-light)")
	}
	dir, addr, conf := nginxConf(t)
	a := newAgent(t, "web", config.OCF{Agent: "heartbeat/nginx", Params: map[string]string{"configfile": conf, "httpd": nginx}},
		WithMonitorInterval(10*time.Second))
	t.Cleanup(func() { a.Stop(proctest.Ctx(t, 20*time.Second)) })
	wantNotRunning(t, "Monitor before start", a.Monitor(opCtx(t)))
	if err := a.Start(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := body(t, "http://"+addr+"/", 5*time.Second); got != "served by tandem's nginx\n" {
		t.Fatalf("nginx answered %q", got)
	}
	if err := a.Monitor(opCtx(t)); err != nil {
		t.Fatalf("Monitor = %v", err)
	}
	master := proctest.ReadPID(t, filepath.Join(dir, "nginx.pid"))
	if err := a.Stop(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	wantNotRunning(t, "Monitor after stop", a.Monitor(opCtx(t)))
	if !refused("http://" + addr + "/") {
		t.Fatal("nginx still answers after stop")
	}
	proctest.WaitGroupGone(t, master) // nginx's master leads its own group, workers in it
}

func TestAnythingRunsARealServer(t *testing.T) {
	requireRoot(t)
	requireAgent(t, "heartbeat/anything")
	if _, err := exec.LookPath("su"); err != nil {
		t.Skip("heartbeat/anything needs su")
	}
	srv := testServer(t)
	dir := t.TempDir()
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "server.pid")
	a := newAgent(t, "app", config.OCF{Agent: "heartbeat/anything", Params: map[string]string{
		"binfile":         srv,
		"cmdline_options": "-addr " + addr,
		"pidfile":         pidFile,
		"logfile":         filepath.Join(dir, "server.log"),
		"workdir":         dir,
	}}, WithMonitorInterval(5*time.Second))
	t.Cleanup(func() { a.Stop(proctest.Ctx(t, 20*time.Second)) })
	if err := a.Start(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := body(t, "http://"+addr+"/", 5*time.Second); got != "ok\n" {
		t.Fatalf("server answered %q", got)
	}
	if err := a.Monitor(opCtx(t)); err != nil {
		t.Fatalf("Monitor = %v", err)
	}
	pid := proctest.ReadPID(t, pidFile)
	if err := a.Stop(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	wantNotRunning(t, "Monitor after stop", a.Monitor(opCtx(t)))
	if !refused("http://" + addr + "/") {
		t.Fatal("server still answers after stop")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
			t.Fatalf("server pid %d still alive after stop", pid)
		}
	}
}

// nginxConf writes a minimal nginx configuration in a new directory and
// returns the directory, the address it listens on and the file.
func nginxConf(t testing.TB) (dir, addr, conf string) {
	t.Helper()
	dir = t.TempDir()
	os.Chmod(dir, 0o755)
	addr, err := proctest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(strings.ReplaceAll(strings.ReplaceAll(`
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path DIR/body;
	proxy_temp_path DIR/proxy;
	server {
		listen ADDR;
		location / { return 200 "served by tandem's nginx\n"; }
	}
}
`, "DIR", dir), "ADDR", addr)), 0o644)
	return dir, addr, conf
}

// nginxBinary finds nginx, or "" when it is not installed.
func nginxBinary() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if fileExists("/usr/sbin/nginx") {
		return "/usr/sbin/nginx"
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
