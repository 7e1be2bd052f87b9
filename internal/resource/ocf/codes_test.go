package ocf

import (
	"testing"

	"tandem/internal/resource"
)

func TestClassifyFollowsTheDocTable(t *testing.T) {
	const (
		OK   = "ok"
		NR   = "not running"
		Soft = "soft"
		Hard = "hard"
		Fat  = "fatal"
	)
	// code: start, monitor, stop — the table in the package doc.
	table := map[int][3]string{
		0:   {OK, OK, OK},
		1:   {Soft, Soft, Soft},
		2:   {Hard, Hard, Hard},
		3:   {Hard, Hard, Hard},
		4:   {Hard, Hard, Hard},
		5:   {Hard, Hard, Hard},
		6:   {Fat, Fat, Fat},
		7:   {Soft, NR, OK},
		8:   {OK, OK, Soft},
		9:   {Soft, Soft, Soft},
		190: {OK, OK, Soft},
		191: {OK, OK, Soft},
		42:  {Soft, Soft, Soft},
		255: {Soft, Soft, Soft},
	}
	for code, want := range table {
		for i, action := range []string{"start", "monitor", "stop"} {
			var got string
			switch classify(action, code) {
			case ok, okDegraded:
				got = OK
			case notRunning:
				got = NR
			case failed:
				got = map[resource.Severity]string{resource.Soft: Soft, resource.Hard: Hard, resource.Fatal: Fat}[severityOf(code)]
			}
			if got != want[i] {
				t.Errorf("%s exit %d: %s, want %s", action, code, got, want[i])
			}
		}
	}
}

func TestCodeName(t *testing.T) {
	for code, want := range map[int]string{6: "OCF_ERR_CONFIGURED (6)", 190: "OCF_DEGRADED (190)", 42: "exit status 42"} {
		if got := CodeName(code); got != want {
			t.Errorf("CodeName(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestParseAgent(t *testing.T) {
	for in, want := range map[string][2]string{
		"heartbeat/Dummy":     {"heartbeat", "Dummy"},
		"ocf:heartbeat:nginx": {"heartbeat", "nginx"},
		"pacemaker/Stateful":  {"pacemaker", "Stateful"},
	} {
		p, typ, err := ParseAgent(in)
		if err != nil || p != want[0] || typ != want[1] {
			t.Errorf("ParseAgent(%q) = %q, %q, %v", in, p, typ, err)
		}
	}
	for _, in := range []string{"", "Dummy", "heartbeat/", "../../bin/sh", "heartbeat/../../../bin/sh", "heartbeat/a/b", "ocf:heartbeat", "../x"} {
		if _, _, err := ParseAgent(in); err == nil {
			t.Errorf("ParseAgent(%q) accepted", in)
		}
	}
}
