package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Day is the unit "d" of a Duration: 24 hours (calendar days are not
// needed for retention periods).
const Day = 24 * time.Hour

// ParseDuration reads a Go duration ("150ms", "1h30m") that may start with
// a whole number of days ("180d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(in, 64); err == nil && in != "0" {
		return 0, fmt.Errorf("%q has no unit (write e.g. %sms or %ss)", in, in, in)
	}
	bad := fmt.Errorf("%q is not a duration (e.g. 150ms, 2s, 10m, 180d)", in)
	sign, rest := time.Duration(1), in
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		if rest[0] == '-' {
			sign = -1
		}
		rest = rest[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseUint(rest[:i], 10, 64)
		if err != nil || n > maxDays {
			return 0, bad
		}
		days, rest = time.Duration(n)*Day, rest[i+1:]
		if rest == "" {
			return sign * days, nil
		}
	}
	if rest == "" || rest[0] == '-' || rest[0] == '+' {
		return 0, bad
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d > math.MaxInt64-days {
		return 0, bad
	}
	return sign * (days + d), nil
}

// maxDays keeps a day count inside time.Duration's range (about 292 years).
const maxDays = 100_000

// String prints whole days as "180d", anything else as time.Duration does.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%Day == 0 {
		return strconv.FormatInt(int64(td/Day), 10) + "d"
	}
	return td.String()
}

// UnmarshalYAML reads a duration string (see ParseDuration).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, d, "a duration (e.g. 150ms, 2s, 180d)", func(s string) (Duration, error) {
		v, err := ParseDuration(s)
		return Duration(v), err
	})
}

// unmarshalScalar stores parse(n's value) in *dst; want names the form
// expected, for the message when n is not a scalar.
func unmarshalScalar[T any](n *yaml.Node, dst *T, want string, parse func(string) (T, error)) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s, got %s", want, kindName(n))
	}
	v, err := parse(n.Value)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML accepts one string or a list of strings.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*l = nil
			return nil
		}
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return fmt.Errorf("expected a string or a list of strings, got a list holding %s", kindName(item))
			}
			out = append(out, item.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("expected a string or a list of strings, got %s", kindName(n))
}

// ParseFailback reads "auto", "manual" or "delay <duration>".
func ParseFailback(s string) (Failback, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && f[0] == string(FailbackAuto):
		return Failback{Mode: FailbackAuto}, nil
	case len(f) == 1 && f[0] == string(FailbackManual):
		return Failback{Mode: FailbackManual}, nil
	case len(f) == 2 && f[0] == string(FailbackDelay):
		d, err := ParseDuration(f[1])
		if err != nil {
			return Failback{}, fmt.Errorf("delay: %w", err)
		}
		return Failback{Mode: FailbackDelay, Delay: d}, nil
	}
	return Failback{}, fmt.Errorf("%q is not auto, manual or delay <duration> (e.g. delay 30s)", s)
}

func (f Failback) String() string {
	if f.Mode == FailbackDelay {
		return "delay " + Duration(f.Delay).String()
	}
	return string(f.Mode)
}

// UnmarshalYAML reads the form ParseFailback reads.
func (f *Failback) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, f, "auto, manual or delay <duration>", ParseFailback)
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (f Failback) MarshalYAML() (any, error) { return f.String(), nil }

// kindName names what a node holds, for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unexpected node"
}

// ParseBytes reads a size: 512, 64K, 64KiB, 10M, 1G, 2GiB, 1T (powers of
// 1024; a trailing B is allowed).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 4096, 512MiB, 10GiB)", s)
	}
	return n * mult, nil
}

// String prints the largest unit that divides the size exactly.
func (b Bytes) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a size (see ParseBytes).
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	return unmarshalScalar(n, b, "a size (e.g. 512MiB, 10GiB)", func(s string) (Bytes, error) {
		v, err := ParseBytes(s)
		return Bytes(v), err
	})
}

// MarshalYAML writes the form UnmarshalYAML reads.
func (b Bytes) MarshalYAML() (any, error) { return b.String(), nil }
