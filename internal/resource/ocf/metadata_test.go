package ocf

import (
	"slices"
	"testing"
)

const sampleMetaData = `<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="sample" version="1.1">
<version>1.1</version>
<shortdesc lang="en">Sample</shortdesc>
<parameters>
<parameter name="config" required="1" unique="1"><content type="string"/></parameter>
<parameter name="port" required="true"><content type="integer" default="80"/></parameter>
<parameter name="verbose" required="0"><content type="boolean" default="false"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s" depth="0"/>
</actions>
</resource-agent>`

func TestParseMetaData(t *testing.T) {
	m, err := ParseMetaData([]byte(sampleMetaData))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "sample" || m.Version != "1.1" || len(m.Parameters) != 3 || len(m.Actions) != 2 {
		t.Fatalf("parsed %+v", m)
	}
	if p := m.Parameters[1]; p.Name != "port" || !p.Required || p.Type != "integer" || p.Default != "80" {
		t.Errorf("port = %+v", p)
	}
	if !m.Parameters[0].Unique || m.Parameters[2].Required {
		t.Errorf("flags wrong: %+v", m.Parameters)
	}
	if got := m.Required(); !slices.Equal(got, []string{"config", "port"}) {
		t.Errorf("Required = %q", got)
	}
	if got := m.Missing(map[string]string{"port": "8080"}); !slices.Equal(got, []string{"config"}) {
		t.Errorf("Missing = %q", got)
	}
	if got := m.Unknown(map[string]string{"port": "1", "verbos": "1", "a": ""}); !slices.Equal(got, []string{"a", "verbos"}) {
		t.Errorf("Unknown = %q", got)
	}
	if a := m.Actions[1]; a.Name != "monitor" || a.Interval != "10s" || a.Timeout != "20s" {
		t.Errorf("monitor action = %+v", a)
	}
}

func TestParseMetaDataRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "not xml", "<other/>", "<resource-agent>"} {
		if _, err := ParseMetaData([]byte(in)); err == nil {
			t.Errorf("ParseMetaData(%q) accepted", in)
		}
	}
}

func FuzzParseMetaData(f *testing.F) {
	f.Add([]byte(sampleMetaData))
	f.Add([]byte(`<resource-agent name="x"><parameters><parameter name="a" required="1"/></parameters></resource-agent>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetaData(b)
		if err != nil {
			return
		}
		if m.Name == "" {
			t.Fatal("accepted meta-data without a name")
		}
		for _, n := range m.Missing(nil) {
			if !slices.Contains(m.Required(), n) {
				t.Fatalf("Missing lists %q, which is not required", n)
			}
		}
	})
}
