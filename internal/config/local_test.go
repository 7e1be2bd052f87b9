package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/keyfile"
)

// localFixture makes an OCF root, a key and a token in a temporary directory
// and returns a config using them, with lines 14 (exec) and 15 (ocf) of base
// replaced, and the directory.
func localFixture(t *testing.T, ocfLine, execLine string) (*Config, string) {
	t.Helper()
	dir := t.TempDir()
	agent := filepath.Join(dir, "ocf", "resource.d", "heartbeat", "Dummy")
	os.MkdirAll(filepath.Dir(agent), 0o755)
	if err := os.WriteFile(agent, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ocf", "resource.d", "heartbeat", "Plain"), []byte("x"), 0o644)
	key, _ := keyfile.Generate()
	if err := keyfile.Write(filepath.Join(dir, "cluster.key"), key, false); err != nil {
		t.Fatal(err)
	}
	tok, _ := keyfile.GenerateToken()
	if err := keyfile.WriteToken(filepath.Join(dir, "api.token"), tok, false); err != nil {
		t.Fatal(err)
	}
	text := edit(map[int]string{
		2:  "key_file: DIR/cluster.key",
		8:  "api: {tcp_port: 7790, token_file: DIR/api.token}",
		14: execLine,
		15: ocfLine,
	}, "")
	c, err := Parse("t.yaml", []byte(strings.ReplaceAll(text, "DIR", dir)))
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func TestCheckLocal(t *testing.T) {
	tests := []struct {
		name, ocf, exec string
		prepare         func(dir string)
		want            []string // DIR stands for the temporary directory
	}{
		{"all present", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [sh, -c, 'sleep 1']}", nil, nil},
		{"agent missing", "      - ocf: {agent: heartbeat/pgsql, root: DIR/ocf}", "      - exec: {command: [/bin/sh]}", nil, []string{
			`t.yaml:15: groups[0].resources[2].ocf.agent: heartbeat/pgsql is not installed here (no DIR/ocf/resource.d/heartbeat/pgsql)`}},
		{"agent not executable", "      - ocf: {agent: heartbeat/Plain, root: DIR/ocf}", "      - exec: {command: [/bin/sh]}", nil, []string{
			`t.yaml:15: groups[0].resources[2].ocf.agent: DIR/ocf/resource.d/heartbeat/Plain is not an executable file`}},
		{"program missing", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [tandem-no-such-program]}", nil, []string{
			`t.yaml:14: groups[0].resources[1].exec.command[0]: "tandem-no-such-program" cannot be run here: executable file not found in $PATH`}},
		{"program relative to dir", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [./Dummy], dir: DIR/ocf/resource.d/heartbeat}", nil, nil},
		{"dir missing", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [/bin/sh], dir: DIR/nope}", nil, []string{
			`t.yaml:14: groups[0].resources[1].exec.dir: DIR/nope is not a directory here`}},
		{"key readable by others", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [/bin/sh]}",
			func(dir string) { os.Chmod(filepath.Join(dir, "cluster.key"), 0o644) }, []string{
				`t.yaml:2: key_file: DIR/cluster.key is accessible by group or others (mode 0644); it must be 0600 or stricter: chmod 600 DIR/cluster.key`}},
		{"key and token missing", "      - ocf: {agent: heartbeat/Dummy, root: DIR/ocf}", "      - exec: {command: [/bin/sh]}",
			func(dir string) {
				os.Remove(filepath.Join(dir, "cluster.key"))
				os.Remove(filepath.Join(dir, "api.token"))
			}, []string{
				`t.yaml:2: key_file: open DIR/cluster.key: no such file or directory`,
				`t.yaml:8: api.token_file: open DIR/api.token: no such file or directory`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dir := localFixture(t, tt.ocf, tt.exec)
			if tt.prepare != nil {
				tt.prepare(dir)
			}
			wantProblems(t, "CheckLocal", c.CheckLocal(), tt.want, dir)
		})
	}
}

// wantProblems compares the problems err carries with want, in which DIR
// stands for dir.
func wantProblems(t *testing.T, what string, err error, want []string, dir string) {
	t.Helper()
	got := problemLines(err)
	var w []string
	for _, line := range want {
		w = append(w, strings.ReplaceAll(line, "DIR", dir))
	}
	if fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("%s:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
}

// Validate does not look for agents: the file validates on a machine
// without them.
func TestValidateIgnoresMissingAgents(t *testing.T) {
	if _, err := Parse("t.yaml", []byte(edit(map[int]string{15: "      - ocf: {agent: heartbeat/NotInstalledAnywhere, root: /nonexistent}"}, ""))); err != nil {
		t.Errorf("Parse: %v", err)
	}
}
