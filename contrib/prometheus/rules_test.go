// Package prometheus holds the tests of tandem's Prometheus alert rules
// (tandem.rules.yml): checked and unit-tested by Debian's promtool, and
// every metric they name documented in docs/metrics.md.
package prometheus

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// The rules pass `promtool check rules` and their unit tests
// (tandem.rules.test.yml, tandem.drill.test.yml).
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; CI installs it): the alert rules are not checked")
	}
	for _, args := range [][]string{
		{"check", "rules", "tandem.rules.yml"},
		{"test", "rules", "tandem.rules.test.yml", "tandem.drill.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}

// Every tandem metric a rule uses is in docs/metrics.md (the metrics of
// the "Planned" section included).
func TestRulesUseDocumentedMetrics(t *testing.T) {
	rules, err := os.ReadFile("tandem.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)`").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	used := regexp.MustCompile(`\btandem_[a-z_]+`).FindAll(rules, -1)
	if len(used) == 0 {
		t.Fatal("no tandem metric in the rules")
	}
	for _, m := range used {
		if !documented[string(m)] {
			t.Errorf("tandem.rules.yml uses %s, which docs/metrics.md does not document", m)
		}
	}
}
