package config

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"150ms":   150 * time.Millisecond,
		"2s":      2 * time.Second,
		"10m":     10 * time.Minute,
		"1h30m":   90 * time.Minute,
		"180d":    180 * Day,
		"1d12h":   36 * time.Hour,
		"0d":      0,
		"0":       0,
		"-1d":     -Day,
		"-30s":    -30 * time.Second,
		" 5s ":    5 * time.Second,
		"1.5s":    1500 * time.Millisecond,
		"100000d": 100000 * Day,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":        `"" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"150":     `"150" has no unit (write e.g. 150ms or 150s)`,
		"1.5":     `"1.5" has no unit (write e.g. 1.5ms or 1.5s)`,
		"fast":    `"fast" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"1.5d":    `"1.5d" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"d":       `"d" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"1d-5s":   `"1d-5s" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"--5s":    `"--5s" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"1d2d":    `"1d2d" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"100001d": `"100001d" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
		"5 s":     `"5 s" is not a duration (e.g. 150ms, 2s, 10m, 180d)`,
	}
	for in, want := range bad {
		if got, err := ParseDuration(in); err == nil || err.Error() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want error %s", in, got, err, want)
		}
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[Duration]string{
		Duration(180 * Day):              "180d",
		Duration(150 * time.Millisecond): "150ms",
		Duration(36 * time.Hour):         "36h0m0s",
		0:                                "0s",
	} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(d), got, want)
		}
		back, err := ParseDuration(d.String())
		if err != nil || Duration(back) != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, d)
		}
	}
}

func TestFailback(t *testing.T) {
	good := map[string]Failback{
		"auto":       {Mode: FailbackAuto},
		"manual":     {Mode: FailbackManual},
		"delay 30s":  {Mode: FailbackDelay, Delay: 30 * time.Second},
		" delay  1d": {Mode: FailbackDelay, Delay: Day},
	}
	for in, want := range good {
		got, err := ParseFailback(in)
		if err != nil || got != want {
			t.Errorf("ParseFailback(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"sometimes":     `"sometimes" is not auto, manual or delay <duration> (e.g. delay 30s)`,
		"delay":         `"delay" is not auto, manual or delay <duration> (e.g. delay 30s)`,
		"Auto":          `"Auto" is not auto, manual or delay <duration> (e.g. delay 30s)`,
		"delay 30":      `delay: "30" has no unit (write e.g. 30ms or 30s)`,
		"delay 30s 1m":  `"delay 30s 1m" is not auto, manual or delay <duration> (e.g. delay 30s)`,
		"manual please": `"manual please" is not auto, manual or delay <duration> (e.g. delay 30s)`,
	}
	for in, want := range bad {
		if got, err := ParseFailback(in); err == nil || err.Error() != want {
			t.Errorf("ParseFailback(%q) = %v, %v; want error %s", in, got, err, want)
		}
	}
	if s := (Failback{Mode: FailbackDelay, Delay: 30 * time.Second}).String(); s != "delay 30s" {
		t.Errorf("String = %q", s)
	}
}

// The value types also work with plain yaml.Unmarshal, for other packages'
// use.
func TestValueTypesWithYAMLUnmarshal(t *testing.T) {
	var v struct {
		D Duration   `yaml:"d"`
		F Failback   `yaml:"f"`
		A StringList `yaml:"a"`
		B StringList `yaml:"b"`
	}
	in := "d: 180d\nf: delay 1m\na: db1\nb: [db1, db2]\n"
	if err := yaml.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if v.D != Duration(180*Day) || v.F != (Failback{FailbackDelay, time.Minute}) ||
		len(v.A) != 1 || v.A[0] != "db1" || len(v.B) != 2 || v.B[1] != "db2" {
		t.Errorf("decoded %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := "d: 180d\nf: delay 1m0s\na:\n    - db1\nb:\n    - db1\n    - db2\n"; string(out) != want {
		t.Errorf("Marshal = %q, want %q", out, want)
	}
	for _, bad := range []string{"a: {x: 1}\n", "a: [[x]]\n", "d: [1s]\n", "f: {mode: auto}\n"} {
		if err := yaml.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%q) succeeded", bad)
		}
	}
}
