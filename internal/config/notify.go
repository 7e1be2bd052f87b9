package config

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"tandem/internal/events"
	"tandem/internal/keyfile"
)

// Notify sends the events this node records, of the chosen kinds, to an
// exec hook and/or a webhook. It is per machine (like api and events): it
// is not part of the configuration digest.
type Notify struct {
	// Kinds are the event kinds sent (tandem events --kind names them);
	// empty: DefaultNotifyKinds.
	Kinds   StringList     `yaml:"kinds"`
	Exec    *NotifyExec    `yaml:"exec"`
	Webhook *NotifyWebhook `yaml:"webhook"`
	// Queue bounds the events waiting per target; when it is full the
	// oldest is dropped (counted and logged).
	Queue int `yaml:"queue"`
	// Timeout bounds each call: a hook still running then is killed, a
	// webhook that has not answered is abandoned.
	Timeout Duration `yaml:"timeout"`
	// Retries of a failed call, Backoff before the first, doubling up to
	// a minute.
	Retries int      `yaml:"retries"`
	Backoff Duration `yaml:"backoff"`
}

// NotifyExec is a program run once per event (like keepalived's notify
// scripts): the event as JSON on its standard input, TANDEM_* variables.
type NotifyExec struct {
	Command []string `yaml:"command"`
}

// NotifyWebhook is an HTTPS endpoint each event is POSTed to as JSON.
type NotifyWebhook struct {
	URL string `yaml:"url"`
	// TokenFile holds a bearer token sent as Authorization: Bearer.
	TokenFile string `yaml:"token_file"`
	// CAFile holds the PEM certificates that sign the server's (default:
	// the system's).
	CAFile string `yaml:"ca_file"`
	// AllowHTTP lets url be plain http://.
	AllowHTTP bool `yaml:"allow_http"`
}

// Enabled reports whether anything is notified.
func (n Notify) Enabled() bool { return n.Exec != nil || n.Webhook != nil }

// DefaultNotifyKinds are the kinds notified when kinds is empty: what an
// operator is paged for, and the drills.
func DefaultNotifyKinds() []events.Kind {
	return []events.Kind{events.Takeover, events.Handover, events.NodeDown, events.NodeUp, events.LeaseLost,
		events.QuorumLost, events.QuorumGained, events.ResFailure, events.GuardDrops, events.ConfigMismatch,
		events.Drill, events.RaidFail, events.RaidDegradedArray, events.RaidRebuildFinished, events.RaidMismatchesFound}
}

// NotifyKinds returns the kinds to send (kinds, or the default set).
func (n Notify) NotifyKinds() []events.Kind {
	if len(n.Kinds) == 0 {
		return DefaultNotifyKinds()
	}
	out, _ := events.ParseKinds(strings.Join(n.Kinds, ","))
	return out
}

// DefaultNotify returns the notification defaults (nothing is notified
// until exec or webhook is set).
func DefaultNotify() Notify {
	return Notify{
		// A few hundred events is hours of a busy cluster's pages; a
		// target down longer than that loses the oldest, not the newest.
		Queue: 256,
		// A hook or a webhook that takes longer is broken, and would hold
		// the ones after it.
		Timeout: Duration(10 * time.Second),
		// 1 + 3 tries over 1 + 2 + 4 s ride out a restarting receiver.
		Retries: 3,
		Backoff: Duration(time.Second),
	}
}

// MaxNotifyQueue bounds notify.queue: events wait in memory.
const MaxNotifyQueue = 100000

func (k *checker) notify(c *Config) {
	n := c.Notify
	if !n.Enabled() {
		if len(n.Kinds) > 0 {
			k.addf("notify.kinds", "set, but notify has neither exec nor webhook: nothing would be notified")
		}
		return
	}
	for i, s := range n.Kinds {
		if _, err := events.ParseKinds(s); err != nil || strings.Contains(s, ",") {
			k.addf(k.listPath("notify.kinds", i, len(n.Kinds)), "%q is not an event kind (tandem events --kind names them: %s)",
				s, kindNames())
		}
	}
	if n.Queue < 1 || n.Queue > MaxNotifyQueue {
		k.addf("notify.queue", "%d is outside 1 to %d", n.Queue, MaxNotifyQueue)
	}
	k.positive("notify.timeout", n.Timeout)
	if n.Retries < 0 || n.Retries > 100 {
		k.addf("notify.retries", "%d is outside 0 to 100", n.Retries)
	}
	k.positive("notify.backoff", n.Backoff)
	if e := n.Exec; e != nil && (len(e.Command) == 0 || e.Command[0] == "") {
		k.addf("notify.exec.command", "required: the program to run, and its arguments")
	}
	if w := n.Webhook; w != nil {
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			k.addf("notify.webhook.url", "required")
		case err != nil || u.Host == "":
			k.addf("notify.webhook.url", "%q is not a URL with a host", w.URL)
		case u.Scheme == "http" && !w.AllowHTTP:
			k.addf("notify.webhook.url", "%q is plain HTTP: events and the token would travel unencrypted (use https://, or allow_http: true)", w.URL)
		case u.Scheme != "https" && u.Scheme != "http":
			k.addf("notify.webhook.url", "%q: the scheme must be https (or http with allow_http)", w.URL)
		case u.User != nil:
			k.addf("notify.webhook.url", "a URL must not carry a password (it would show in logs): use token_file")
		}
		k.absPath("notify.webhook.token_file", w.TokenFile)
		k.absPath("notify.webhook.ca_file", w.CAFile)
	}
}

func kindNames() string {
	var names []string
	for _, k := range events.KnownKinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// localNotify checks on this machine that the hook can run and the
// webhook's token and CA load.
func (k *checker) localNotify(c *Config) {
	n := c.Notify
	if e := n.Exec; e != nil && len(e.Command) > 0 && e.Command[0] != "" {
		if _, err := exec.LookPath(e.Command[0]); err != nil {
			k.addf("notify.exec.command[0]", "%q cannot be run here: %v", e.Command[0], lookPathReason(err))
		}
	}
	if w := n.Webhook; w != nil {
		if w.TokenFile != "" {
			if _, err := keyfile.LoadSecret(w.TokenFile); err != nil {
				k.addf("notify.webhook.token_file", "%s", strings.TrimPrefix(err.Error(), "keyfile: "))
			}
		}
		if w.CAFile != "" {
			if _, err := LoadCA(w.CAFile); err != nil {
				k.addf("notify.webhook.ca_file", "%v", err)
			}
		}
	}
}

// LoadCA reads PEM certificates into a pool.
func LoadCA(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
