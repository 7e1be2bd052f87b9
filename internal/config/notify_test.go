package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/events"
)

// Each notify mistake is reported at its line, all at once.
func TestNotifyValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		add  string
		want []string
	}{
		{"exec and webhook", "notify:\n  kinds: [takeover, drill]\n  exec: {command: [/bin/true]}\n  webhook: {url: \"https://h.example/x\", token_file: /etc/t}\n", nil},
		{"defaults only", "notify: {exec: {command: [notify-send]}}\n", nil},
		{"every mistake", `notify:
  kinds: [takeover, takover]
  queue: 0
  timeout: 0s
  retries: -1
  exec: {command: []}
  webhook: {url: "http://h.example/x", token_file: rel/t}
`, []string{
			`t.yaml:17: notify.kinds[1]: "takover" is not an event kind (tandem events --kind names them: ` + kindNames() + ")",
			"t.yaml:18: notify.queue: 0 is outside 1 to 100000",
			"t.yaml:19: notify.timeout: must be more than 0, got 0s",
			"t.yaml:20: notify.retries: -1 is outside 0 to 100",
			"t.yaml:21: notify.exec.command: required: the program to run, and its arguments",
			`t.yaml:22: notify.webhook.url: "http://h.example/x" is plain HTTP: events and the token would travel unencrypted (use https://, or allow_http: true)`,
			`t.yaml:22: notify.webhook.token_file: "rel/t" must be an absolute path`,
		}},
		{"http allowed", "notify: {webhook: {url: \"http://127.0.0.1:9/x\", allow_http: true}}\n", nil},
		{"password in the url", "notify: {webhook: {url: \"https://u:p@h.example/x\"}}\n", []string{
			"t.yaml:16: notify.webhook.url: a URL must not carry a password (it would show in logs): use token_file"}},
		{"kinds without a target", "notify: {kinds: [takeover]}\n", []string{
			"t.yaml:16: notify.kinds: set, but notify has neither exec nor webhook: nothing would be notified"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := edit(nil, tt.add)
			c, err := Parse("t.yaml", []byte(text))
			got := problemLines(err)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("config:\n%s\ngot:\n  %s\nwant:\n  %s", text, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if err == nil && c.Digest() != mustParse(t, edit(nil, "")).Digest() {
				t.Error("notify changed the configuration digest; it is per machine")
			}
		})
	}
}

func TestNotifyKinds(t *testing.T) {
	var n Notify
	if got := n.NotifyKinds(); len(got) != len(DefaultNotifyKinds()) {
		t.Errorf("empty kinds: %v", got)
	}
	n.Kinds = StringList{"drill", "Fail"}
	if got := n.NotifyKinds(); len(got) != 2 || got[0] != events.Drill || got[1] != events.RaidFail {
		t.Errorf("kinds: %v", got)
	}
}

// On the machine: the token must be private, the CA a PEM, the hook a program.
func TestNotifyLocalChecks(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o644)
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	c := mustParse(t, edit(nil, "notify:\n  exec: {command: [/nonexistent/hook]}\n  webhook: {url: \"https://h.example/x\", token_file: "+tok+", ca_file: "+ca+"}\n"))
	var k checker
	k.src = c.src
	k.localNotify(c)
	got := strings.Join(problemLines(k.probs.errOrNil()), "\n")
	for _, want := range []string{"notify.exec.command[0]: \"/nonexistent/hook\" cannot be run here",
		"notify.webhook.token_file: " + tok, "notify.webhook.ca_file: " + ca + " holds no PEM certificate"} {
		if !strings.Contains(got, want) {
			t.Errorf("local problems lack %q:\n%s", want, got)
		}
	}
}
