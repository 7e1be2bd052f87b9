package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"tandem/internal/buildinfo"
	"tandem/internal/config"
	"tandem/internal/keyfile"
)

// Webhook POSTs each event as JSON. 2xx is delivered; 429, 5xx and no
// answer are retried; any other answer (a 4xx, a redirect, which is not
// followed) is not.
type Webhook struct {
	url    string
	token  string
	client *http.Client
}

// NewWebhook loads the token and CA of cfg.
func NewWebhook(cfg config.NotifyWebhook) (*Webhook, error) {
	w := &Webhook{url: cfg.URL}
	if cfg.TokenFile != "" {
		tok, err := keyfile.LoadSecret(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook token: %w", err)
		}
		w.token = tok
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := config.LoadCA(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("notify: webhook ca_file: %w", err)
		}
		tlsCfg.RootCAs = pool
	}
	w.client = &http.Client{
		// No proxy from the environment: events go where the
		// configuration says, nowhere else.
		Transport: &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return w, nil
}

func (*Webhook) Name() string { return "webhook" }

// Deliver posts m.
func (w *Webhook) Deliver(ctx context.Context, m Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(m.JSON))
	if err != nil {
		return Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem/"+buildinfo.Version())
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return Permanent(fmt.Errorf("webhook answered %s (not retried): %s", resp.Status, strings.TrimSpace(string(msg))))
}
