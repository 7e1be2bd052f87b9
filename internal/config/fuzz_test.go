package config

import (
	"bytes"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse feeds the decoder arbitrary files. It must never panic or loop,
// must return either a configuration or Problems (each with the file's name,
// a line inside the file and a message), and a configuration it accepts must
// validate and survive being written out and read back.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		base,
		Example,
		billionLaughs(3),
		"cluster: x\ntiming: &t {<<: *t}\n",
		"cluster: x\ngroups: &l [*l]\n",
		"",
		"- a\n",
		"cluster: a\n---\ncluster: b\n",
		"cluster: [\n",
		"nodes: {name: a}\n",
		"groups: [{name: g, failback: delay 30s, resources: [{vip: {address: 10.0.0.9/24}}]}]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
		}
		if err != nil {
			probs := AsProblems(err)
			if len(probs) == 0 {
				t.Fatalf("an error that is not Problems: %v", err)
			}
			lines := yamlLines(data)
			for _, p := range probs {
				if p.File != "f.yaml" || p.Msg == "" || p.Line < 0 || p.Line > lines+1 {
					t.Fatalf("problem %+v (file of %d lines)", p, lines)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse("again.yaml", out)
		if err != nil {
			t.Fatalf("written out and read back:\n%s\n%v", out, err)
		}
		out2, err := yaml.Marshal(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("written out, read back and written again differs:\n%s\n%s", out, out2)
		}
	})
}

// yamlLines is how many lines YAML sees in data, at most: it breaks lines
// at CR, LF, NEL, LS and PS, so a file of lone carriage returns (testdata
// 04ac90799672819a) has lines that bytes.Count of "\n" does not see.
// CRLF counts twice, which only loosens the bound.
func yamlLines(data []byte) int {
	n := 1
	for _, sep := range []string{"\r", "\n", "\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(sep))
	}
	return n
}
