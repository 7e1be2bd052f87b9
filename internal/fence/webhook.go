package fence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Webhook is a fence device behind an HTTPS endpoint (a cloud API's
// gateway, a script of one's own): each action is a POST of
// {"action": "off", "plug": "node2"} with the bearer token from TokenFile.
// A 2xx answer is success; status and monitor answers carry
// {"power": "on"|"off"}. Anything else (another status, a body that is not
// that JSON, more than 64 KiB, no answer within Timeout) fails the attempt.
// Redirects are not followed: the token goes to URL only.
type Webhook struct {
	URL       string
	TokenFile string
	Timeout   time.Duration
	Client    *http.Client // nil: a client with the system's roots
}

const webhookMaxBody = 64 << 10

// Run implements Device.
func (w *Webhook) Run(ctx context.Context, action Action, plug string) (Reply, error) {
	rep := Reply{Action: action}
	if !action.Valid() {
		return rep, fmt.Errorf("fence: unknown action %q", action)
	}
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"action": string(action), "plug": plug})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return rep, fmt.Errorf("fence: webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if w.TokenFile != "" {
		raw, err := os.ReadFile(w.TokenFile)
		if err != nil {
			return rep, fmt.Errorf("fence: webhook token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimRight(string(raw), "\r\n"))
	}
	client := w.Client
	if client == nil {
		client = &http.Client{}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	start := time.Now()
	resp, err := c.Do(req)
	rep.Duration = time.Since(start)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return rep, fmt.Errorf("%w: webhook %s after %v", ErrTimeout, action, timeout)
		}
		// url.Error names the URL, which carries no secret (config refuses
		// a password in it).
		return rep, fmt.Errorf("%w: webhook %s: %v", ErrAgentFail, action, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, webhookMaxBody+1))
	if err != nil {
		return rep, fmt.Errorf("%w: webhook %s: reading the answer: %v", ErrAgentFail, action, err)
	}
	if len(data) > webhookMaxBody {
		return rep, fmt.Errorf("%w: webhook %s answered more than %d bytes", ErrOutput, action, webhookMaxBody)
	}
	if resp.StatusCode/100 != 2 {
		return rep, fmt.Errorf("%w: webhook %s: HTTP %d%s", ErrAgentFail, action, resp.StatusCode, tailSuffix(lastBytes(string(data), stderrTail)))
	}
	if action == Status {
		var ans struct {
			Power string `json:"power"`
		}
		if err := json.Unmarshal(data, &ans); err != nil {
			return rep, fmt.Errorf("%w: webhook status: %v", ErrOutput, err)
		}
		switch ans.Power {
		case "on":
			rep.Power = PowerOn
		case "off":
			rep.Power = PowerOff
		default:
			return rep, fmt.Errorf("%w: webhook status: power %q is not on or off", ErrOutput, ans.Power)
		}
	}
	return rep, nil
}

var _ Device = (*Webhook)(nil)
