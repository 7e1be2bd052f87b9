// Package check owns the health probes of exec resources: a TCP connect, an
// HTTP GET (2xx and 3xx are healthy) and a command (exit 0 is healthy). Each
// probe is bounded by its context: a command is killed with its whole
// process group when the context ends. Probes hold no state between calls.
// It is imported by the exec agent (and by anything else that wants a
// probe); it imports config and exec/proc.
package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"tandem/internal/config"
	"tandem/internal/resource/exec/proc"
)

// Probe reports nil when the service is healthy.
type Probe func(ctx context.Context) error

// New returns the probe spec describes (exactly one of its fields is set;
// the config loader has validated that). env is the environment of a
// command probe (see proc.Env).
func New(spec config.Check, env []string) (Probe, error) {
	switch {
	case spec.TCP != "":
		addr := spec.TCP
		return func(ctx context.Context) error { return TCP(ctx, addr) }, nil
	case spec.HTTP != "":
		url := spec.HTTP
		return func(ctx context.Context) error { return HTTP(ctx, url) }, nil
	case len(spec.Command) > 0:
		argv := spec.Command
		return func(ctx context.Context) error { return Command(ctx, argv, env) }, nil
	}
	return nil, errors.New("check: none of tcp, http, command is set")
}

// TCP connects to addr (host:port) and closes the connection at once.
func TCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("check: tcp %s: %w", addr, err)
	}
	return c.Close()
}

// Body bytes read from an HTTP answer: enough to quote an error page,
// bounded so a huge or endless body cannot stall or bloat the probe.
const maxBody = 64 << 10

// probeClient never reuses connections (a probe must prove a new client
// gets in) and never follows redirects (3xx is itself healthy, and a
// redirect elsewhere would probe some other service).
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// HTTP sends GET url; a 2xx or 3xx status is healthy.
func HTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("check: http %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "tandem-check")
	resp, err := probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("check: http: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return nil // a body cut short by the limit or the deadline does not matter
	}
	if err != nil {
		return fmt.Errorf("check: http %s: status %s (body: %w)", url, resp.Status, err)
	}
	return fmt.Errorf("check: http %s: status %s: %s", url, resp.Status, snippet(body))
}

// Command runs argv with env; exit status 0 is healthy. At the end of ctx
// the command's whole process group is killed.
func Command(ctx context.Context, argv []string, env []string) error {
	var out capped
	res, err := proc.Run(ctx, proc.Cmd{Argv: argv, Env: env, Dir: "/", Stdout: &out, Stderr: &out, KillGroupOnExit: true})
	switch {
	case err != nil:
		return fmt.Errorf("check: command %q: %w", argv[0], err)
	case res.TimedOut:
		return fmt.Errorf("check: command %q: killed at deadline: %w", argv[0], context.Cause(ctx))
	case res.Signal != "":
		return fmt.Errorf("check: command %q: killed by %s: %s", argv[0], res.Signal, snippet(out.buf))
	case res.Code != 0:
		return fmt.Errorf("check: command %q: exit status %d: %s", argv[0], res.Code, snippet(out.buf))
	}
	return nil
}

// snippet quotes the start of a child's output or an error page in one
// line.
func snippet(b []byte) string {
	const max = 200
	b = bytes.TrimSpace(b)
	cut := len(b) > max
	if cut {
		b = b[:max]
	}
	s := fmt.Sprintf("%q", proc.Clean(b))
	if cut {
		s += "…"
	}
	return s
}

// capped keeps the first bytes written to it and drops the rest.
type capped struct{ buf []byte }

func (c *capped) Write(p []byte) (int, error) {
	if room := 1024 - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
