package nbd

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// testLogger sends server logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// testServer is a running server on a unix socket and a TCP port.
type testServer struct {
	*Server
	sock string // unix socket path
	tcp  string // 127.0.0.1:port
}

// uri returns an NBD URI for export over the unix socket.
func (ts *testServer) uri(export string) string {
	return "nbd+unix:///" + export + "?socket=" + ts.sock
}

func startServer(t testing.TB, exports ...Export) *testServer {
	t.Helper()
	return startServerWith(t, nil, exports...)
}

// startServerWith is startServer with configure run before Serve (limits,
// TLS).
func startServerWith(t testing.TB, configure func(*Server) error, exports ...Export) *testServer {
	t.Helper()
	// Unix socket paths must stay under 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "nbdt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(testLogger(t), exports...)
	if configure != nil {
		if err := configure(s); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(ul) }()
	go func() { errc <- s.Serve(tl) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for range 2 {
			if err := <-errc; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return &testServer{Server: s, sock: sock, tcp: tl.Addr().String()}
}
