package ocf

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/logcheck"
	"tandem/internal/resource/exec/proc/proctest"
)

// An agent's chatter (nginx's agent printed its whole `nginx -V` on every
// start, at Info) is logged at Debug; what ocf_log marks as an error is
// logged at Warn and its warnings at Info, so the agent's log at its
// default level shows only those.
func TestAgentOutputIsDebugUnlessItIsAnError(t *testing.T) {
	chatter := `echo "nginx version: nginx/1.22.1"
echo "configure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx" >&2
echo "2025/01/02_10:00:00 INFO: nginx is running" >&2
echo "2025/01/02_10:00:00 WARNING: nginx: the configuration has warnings" >&2
echo "2025/01/02_10:00:00 ERROR: nginx: cannot bind to port 80" >&2
echo "ocf-exit-reason:nginx: cannot bind to port 80" >&2
exit 0`
	want := map[string]string{ // line → level at which it is logged
		"nginx version: nginx/1.22.1":                                           "DEBUG",
		"configure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx": "DEBUG",
		"2025/01/02_10:00:00 INFO: nginx is running":                            "DEBUG",
		"2025/01/02_10:00:00 WARNING: nginx: the configuration has warnings":    "INFO",
		"2025/01/02_10:00:00 ERROR: nginx: cannot bind to port 80":              "WARN",
		"ocf-exit-reason:nginx: cannot bind to port 80":                         "DEBUG",
	}
	root := fakeRoot(t, map[string]string{"chatty": chatter})
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		rec := startLogged(t, root, "tandemtest/chatty", level)
		got := map[string]string{}
		for _, l := range rec.Lines() {
			if line, ok := logcheck.Field(l, "line"); ok {
				got[line], _ = logcheck.Field(l, "level")
			}
		}
		for line, lv := range want {
			if level == slog.LevelInfo && lv == "DEBUG" {
				lv = "" // not logged at all
			}
			if got[line] != lv {
				t.Errorf("at %v, %q logged at %q, want %q\n%s", level, line, got[line], lv, strings.Join(rec.Lines(), "\n"))
			}
		}
	}
}

// The same through the real ocf_log of Debian's resource-agents.
func TestOCFLogLevels(t *testing.T) {
	funcs := DefaultRoot + "/lib/heartbeat/ocf-shellfuncs"
	if _, err := os.Stat(funcs); err != nil {
		t.Skipf("no %s (Debian package resource-agents)", funcs)
	}
	root := fakeRoot(t, map[string]string{"real": `. "$OCF_FUNCTIONS_DIR/ocf-shellfuncs"
ocf_log info "nginx version: nginx/1.22.1 built with OpenSSL"
ocf_log warn "the configuration has warnings"
ocf_log err "cannot bind to port 80"
exit 0`})
	if err := os.Symlink(DefaultRoot+"/lib", root+"/lib"); err != nil { // the shell functions' own includes
		t.Fatal(err)
	}
	rec := startLogged(t, root, "tandemtest/real", slog.LevelInfo)
	got := map[string]string{}
	for _, l := range rec.Lines() {
		line, _ := logcheck.Field(l, "line")
		lv, _ := logcheck.Field(l, "level")
		for _, w := range []string{"nginx version", "has warnings", "cannot bind"} {
			if strings.Contains(line, w) {
				got[w] = lv
			}
		}
	}
	want := map[string]string{"has warnings": "INFO", "cannot bind": "WARN"}
	if len(got) != len(want) || got["has warnings"] != "INFO" || got["cannot bind"] != "WARN" {
		t.Errorf("ocf_log lines at Info and above: %v, want %v\n%s", got, want, strings.Join(rec.Lines(), "\n"))
	}
}

// startLogged starts agent under root with a logger at level, and returns
// what it logged.
func startLogged(t *testing.T, root, agent string, level slog.Level) *logcheck.Recorder {
	t.Helper()
	log, rec := logcheck.New(t, level)
	a, err := New("web-nginx", config.OCF{Agent: agent, Root: root}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(proctest.Ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return rec
}
