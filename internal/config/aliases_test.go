package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// billionLaughs is a configuration in which each node entry merges nine
// copies of the one before: levels lines that expand to 9^levels mappings.
// Before aliases were bounded, validating 8 levels (538 bytes) took minutes.
func billionLaughs(levels int) string {
	var b strings.Builder
	b.WriteString("cluster: shop\nkey_file: /k\nnodes:\n  - &m0 {name: a, links: [10.0.0.1]}\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d, ", i-1), 9), ", "))
	}
	return b.String()
}

func TestParseRefusesAliasBomb(t *testing.T) {
	// Five levels would still decode in a blink without the bound; nine
	// take hours. Both are refused at the same alias: m0 is 6 nodes, m1..m3
	// add 54, 513 and 4617, and the aliases of m3 on line 8 cross the bound.
	for _, levels := range []int{5, 9} {
		text := billionLaughs(levels)
		_, err := Parse("bomb.yaml", []byte(text))
		probs := AsProblems(err)
		if len(probs) != 1 || probs[0].File != "bomb.yaml" || probs[0].Line != 8 ||
			!strings.Contains(probs[0].Msg, "YAML aliases: with *m3 here") {
			t.Fatalf("Parse of %d levels of aliases: %v", levels, err)
		}
		t.Logf("%s (%d bytes)", probs[0], len(text))
	}
}

func TestParseRefusesAliasLoop(t *testing.T) {
	for _, text := range []string{
		"cluster: x\ntiming: &t {<<: *t}\n",
		"cluster: x\ngroups:\n  - &g {name: a, resources: [{exec: {<<: *g}}]}\n",
		"cluster: x\ngroups: &l [*l]\n",
	} {
		_, err := Parse("loop.yaml", []byte(text))
		probs := AsProblems(err)
		if len(probs) != 1 || !strings.Contains(probs[0].String(), "loop.yaml:") || !strings.Contains(probs[0].Msg, "contains it") {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
}

// A shared template aliased by many groups is what aliases are for; it stays
// well within the bound.
func TestParseAllowsOrdinaryAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString(edit(map[int]string{14: "      - exec: &tpl {command: [/bin/web], check: {tcp: \"127.0.0.1:80\"}, stop_signal: INT, env: {A: a, B: b}}"}, ""))
	for i := range 100 {
		fmt.Fprintf(&b, "  - name: g%d\n    resources: [{exec: {<<: *tpl, command: [/bin/g%d]}}]\n", i, i)
	}
	c := mustParse(t, b.String())
	if len(c.Groups) != 101 || c.Groups[100].Resources[0].Exec.StopSignal != "INT" {
		t.Fatalf("groups %d", len(c.Groups))
	}
}

// BenchmarkParseAliasBomb measures how long refusing a billion laughs takes,
// as a ratio to parsing the ordinary base configuration in the same run.
func BenchmarkParseAliasBomb(b *testing.B) {
	bomb, plain := []byte(billionLaughs(9)), []byte(base)
	var tBomb, tBase time.Duration
	for b.Loop() {
		t0 := time.Now()
		Parse("base.yaml", plain)
		t1 := time.Now()
		Parse("bomb.yaml", bomb)
		tBase += t1.Sub(t0)
		tBomb += time.Since(t1)
	}
	b.ReportMetric(float64(tBomb)/float64(tBase), "bomb/base")
}
