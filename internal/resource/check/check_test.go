package check

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/resource/exec/proc"
	"tandem/internal/resource/exec/proc/proctest"
)

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := TCP(proctest.Ctx(t, time.Second), addr); err != nil {
		t.Errorf("listening port: %v", err)
	}
	ln.Close()
	err = TCP(proctest.Ctx(t, time.Second), addr)
	if err == nil || !strings.Contains(err.Error(), "check: tcp "+addr) {
		t.Errorf("closed port: %v", err)
	}
}

func TestHTTPStatusClasses(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/broken", http.StatusFound) // must not be followed
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		chunk := []byte(strings.Repeat("garbage\x1b", 1024))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for path, wantErr := range map[string]string{
		"/ok":       "",
		"/redirect": "",
		"/broken":   `status 503 Service Unavailable: "database down"`,
		"/endless":  "status 500 Internal Server Error: \"garbage\uFFFDgarbage",
	} {
		err := HTTP(proctest.Ctx(t, 5*time.Second), srv.URL+path)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%s: %v", path, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: got %v, want %q", path, err, wantErr)
		case err != nil && len(err.Error()) > 400:
			t.Errorf("%s: error is %d bytes long, want a short snippet", path, len(err.Error()))
		}
	}
}

func TestHTTPHungServerBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	err = HTTP(proctest.Ctx(t, 200*time.Millisecond), "http://"+ln.Addr().String()+"/")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("probe took %v", d)
	}
}

func TestCommand(t *testing.T) {
	env := proc.Env(nil)
	if err := Command(proctest.Ctx(t, 5*time.Second), []string{"true"}, env); err != nil {
		t.Errorf("true: %v", err)
	}
	err := Command(proctest.Ctx(t, 5*time.Second), []string{"sh", "-c", "echo not ready; exit 4"}, env)
	if err == nil || !strings.Contains(err.Error(), `exit status 4: "not ready"`) {
		t.Errorf("exit 4: %v", err)
	}
	if err := Command(proctest.Ctx(t, 5*time.Second), []string{"no-such-check"}, env); err == nil {
		t.Error("missing command passed")
	}
}

func TestCommandKilledWithGroupAtDeadline(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pgid")
	start := time.Now()
	err := Command(proctest.Ctx(t, 300*time.Millisecond),
		[]string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 30 & sleep 30"}, proc.Env(nil))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "killed at deadline") {
		t.Errorf("err = %v, want killed at deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("probe took %v", d)
	}
	proctest.WaitGroupGone(t, proctest.ReadPID(t, pidFile))
}

func TestCommandLeavesNothingBehind(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pgid")
	// Healthy, but leaves a background child holding the output pipe.
	err := Command(proctest.Ctx(t, 5*time.Second),
		[]string{"sh", "-c", "echo $$ > " + pidFile + "; sleep 30 & exit 0"}, proc.Env(nil))
	if err != nil {
		t.Fatal(err)
	}
	proctest.WaitGroupGone(t, proctest.ReadPID(t, pidFile))
}

func TestNewPicksTheConfiguredProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, spec := range []config.Check{{TCP: ln.Addr().String()}, {Command: []string{"true"}}} {
		p, err := New(spec, proc.Env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := p(proctest.Ctx(t, time.Second)); err != nil {
			t.Errorf("%+v: %v", spec, err)
		}
	}
	if _, err := New(config.Check{}, nil); err == nil {
		t.Error("empty check accepted")
	}
}
