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
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &Error{Code: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
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
	var out []events.Event
	err := c.do(ctx, "GET", "/v1/events?"+q.Encode(), nil, &out)
	return out, err
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
