package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// source remembers where a parsed Config came from, so that Validate can say
// FILE:LINE for each problem.
type source struct {
	file  string
	lines map[string]int // field path -> line
}

// Load reads, defaults and validates the configuration file at path. Problems
// in the file come back as Problems; reading it fails with a plain error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in messages), applies defaults and
// validates. On any problem it returns nil and Problems listing all of them:
// unknown fields, malformed values and every rule Validate checks.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, Problems{syntaxProblem(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: name, Line: extra.Line, Msg: "a second YAML document; the file must hold one"}}
	}
	if probs := checkAliases(name, &root); probs != nil {
		return nil, probs
	}

	d := &decoder{file: name, lines: map[string]int{}}
	c := Default()
	// Filled from other fields once decoding is done (see ApplyDefaults).
	c.Timing.Lease, c.Events.File = 0, ""
	if len(root.Content) == 1 {
		d.decode(root.Content[0], "", reflect.ValueOf(&c).Elem())
	}
	c.src = &source{file: name, lines: d.lines}
	c.ApplyDefaults()

	probs := d.probs
	for _, p := range AsProblems(c.Validate()) {
		if !hasProblemAt(d.probs, p.Path) {
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		return nil, probs.sorted()
	}
	return &c, nil
}

// hasProblemAt reports whether decoding already found a problem at path or
// above it; validating the default left in its place would only add noise.
func hasProblemAt(probs Problems, path string) bool {
	for _, p := range probs {
		if p.Path == "" || p.Path == path || isUnder(path, p.Path) {
			return true
		}
	}
	return false
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (not its scanner),
// which reports their line counting from 0: the line where the construct
// that failed began.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// syntaxProblem turns a yaml.v3 error into a Problem with its line.
func syntaxProblem(name string, err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if parserProblems[m[2]] {
			line++
		}
		return Problem{File: name, Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return Problem{File: name, Msg: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}
