package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tandem/internal/events"
	"tandem/internal/node"
)

// Client calls the API of one agent.
type Client struct {
	http  *http.Client
	base  string
	token string
}

// NewUnixClient talks to the agent's unix socket.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "http://tandem"}
}

// NewTCPClient talks to an agent over TCP with a bearer token.
func NewTCPClient(addr, token string) *Client {
	return &Client{http: &http.Client{Timeout: 30 * time.Second}, base: "http://" + addr, token: token}
}

// ErrUnreachable marks a request that got no answer from the agent at all
// (no socket, nobody listening, the connection closed or timed out), as
// opposed to an Error the agent answered.
var ErrUnreachable = errors.New("cannot reach the tandem agent")

// Error is an error answered by the agent.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsCode reports whether err is an API error with HTTP status code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.doHeader(ctx, method, path, body, out)
	return err
}

// doHeader is do that also returns the answer's headers.
func (c *Client) doHeader(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return resp.Header, &Error{Code: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		return resp.Header, json.Unmarshal(data, out)
	}
	return resp.Header, nil
}

// Status returns the cluster as the agent sees it.
func (c *Client) Status(ctx context.Context) (node.Status, error) {
	var s node.Status
	err := c.do(ctx, "GET", "/v1/status", nil, &s)
	return s, err
}

// Failover moves group (to "" = the best other node) and returns the target.
func (c *Client) Failover(ctx context.Context, group, to string) (string, error) {
	var out struct {
		To string `json:"to"`
	}
	err := c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(group)+"/failover", map[string]string{"to": to}, &out)
	return out.To, err
}

// ForceFailover moves group to `to` even onto a stale replica of its
// volume, and returns what is lost.
func (c *Client) ForceFailover(ctx context.Context, group, to string) ([]string, error) {
	var out struct {
		Lost []string `json:"lost"`
	}
	err := c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(group)+"/failover", map[string]any{"to": to, "force": true}, &out)
	return out.Lost, err
}

// Cleanup resets a group's failures.
func (c *Client) Cleanup(ctx context.Context, group string) error {
	return c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(group)+"/cleanup", nil, nil)
}

// Standby sets a node's standby flag.
func (c *Client) Standby(ctx context.Context, nodeName string, on bool) error {
	return c.do(ctx, "POST", "/v1/nodes/"+url.PathEscape(nodeName)+"/standby", map[string]bool{"on": on}, nil)
}

// Maintenance sets cluster (nodeName "") or node maintenance.
func (c *Client) Maintenance(ctx context.Context, nodeName string, on bool) error {
	return c.do(ctx, "POST", "/v1/maintenance", map[string]any{"on": on, "node": nodeName}, nil)
}

// Events reads the agent's audit log.
func (c *Client) Events(ctx context.Context, q url.Values) ([]events.Event, error) {
	res, err := c.ScanEvents(ctx, q)
	return res.Events, err
}

// ScanEvents is Events with the lines of the agent's log that are not
// entries (torn, too long, not JSON): skipped, counted and named in the
// answer's Tandem-Skipped-Lines and Tandem-Skipped headers.
func (c *Client) ScanEvents(ctx context.Context, q url.Values) (events.Result, error) {
	var res events.Result
	h, err := c.doHeader(ctx, "GET", "/v1/events?"+q.Encode(), nil, &res.Events)
	if err != nil {
		return res, err
	}
	res.BadCount, _ = strconv.Atoi(h.Get(skippedCountHeader))
	for _, v := range h.Values(skippedHeader) {
		if b, ok := events.ParseBadLine(v); ok {
			res.Bad = append(res.Bad, b)
		}
	}
	return res, nil
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// RecordDrill appends a drill record to the agent's audit log.
func (c *Client) RecordDrill(ctx context.Context, group, result, message string, attrs map[string]any) error {
	return c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(group)+"/drills",
		map[string]any{"result": result, "message": message, "attrs": attrs}, nil)
}

// Fence asks the agent to fence target by hand (tandem fence NODE --yes).
// A fence that ran and failed is a reply with Error set, not an error.
func (c *Client) Fence(ctx context.Context, target string) (FenceReply, error) {
	var out FenceReply
	err := c.do(ctx, "POST", "/v1/nodes/"+url.PathEscape(target)+"/fence", map[string]bool{"yes": true}, &out)
	return out, err
}

// CrashForDrill kills the agent (SIGKILL) for an unplanned drill of a
// group it runs. The agent answers before it dies; a connection that
// breaks instead is an ErrUnreachable.
func (c *Client) CrashForDrill(ctx context.Context, group string) error {
	return c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(group)+"/drill-crash", nil, nil)
}

// DashboardLoginPath mints a one-time dashboard login (unix socket only)
// and returns its path, "/ui/login?t=…", to open on the agent's TCP API.
func (c *Client) DashboardLoginPath(ctx context.Context) (string, error) {
	var out struct {
		Path string `json:"path"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/dashboard/login-token", nil, &out)
	return out.Path, err
}
