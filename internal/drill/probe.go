package drill

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// ParseCheck validates a service check: http://…, https://… or
// tcp://HOST:PORT.
func ParseCheck(check string) (*url.URL, error) {
	u, err := url.Parse(check)
	if err != nil {
		return nil, fmt.Errorf("drill: check %q: %w", check, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("drill: check %q has no host", check)
		}
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Path != "" {
			return nil, fmt.Errorf("drill: check %q: write tcp://HOST:PORT", check)
		}
	default:
		return nil, fmt.Errorf("drill: check %q: write http://…, https://… or tcp://HOST:PORT", check)
	}
	return u, nil
}

// Probe checks once that the service answers: an HTTP status below 400,
// or a TCP connection accepted.
func Probe(ctx context.Context, check string) error {
	u, err := ParseCheck(check)
	if err != nil {
		return err
	}
	if u.Scheme == "tcp" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, check, nil)
	if err != nil {
		return err
	}
	// A new connection each time, as a new client would make.
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
