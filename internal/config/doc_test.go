package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docRow is one field documented in docs/config.md.
type docRow struct {
	line                 int
	path, typ, defaultIs string
}

var docRowRE = regexp.MustCompile("^\\| `([a-z_\\[\\].]+)` \\| ([^|]+) \\| ([^|]*) \\|")

func readDocRows(t *testing.T) map[string]docRow {
	t.Helper()
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	for i, line := range strings.Split(string(data), "\n") {
		m := docRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := docRow{line: i + 1, path: m[1], typ: strings.TrimSpace(m[2]), defaultIs: strings.TrimSpace(m[3])}
		if prev, dup := rows[r.path]; dup {
			t.Errorf("docs/config.md:%d: %s documented again (first on line %d)", r.line, r.path, prev.line)
		}
		rows[r.path] = r
	}
	return rows
}

// schemaField is one yaml field of Config, found by reflection, with its
// value in a Config holding every default.
type schemaField struct {
	typ reflect.Type
	def reflect.Value
}

// defaultsSample is a Config with one of every list item and every optional
// section present, each holding its defaults.
func defaultsSample() Config {
	c := Default()
	c.Nodes = []Node{{}}
	c.Witness = &Node{}
	r := DefaultResource("exec")
	vip, ex, ocf := DefaultVIP(), DefaultExec(), DefaultOCF()
	ex.Check = &Check{}
	fs, exp := DefaultFilesystem(), DefaultNBDExport()
	r.VIP, r.Exec, r.OCF, r.Volume, r.Filesystem, r.NBDExport = &vip, &ex, &ocf, &VolumeRef{}, &fs, &exp
	g := DefaultGroup()
	g.Resources = []Resource{r}
	c.Groups = []Group{g}
	v := DefaultVolume()
	v.Replicas = []Replica{{}}
	c.Volumes = []Volume{v}
	c.Notify.Exec, c.Notify.Webhook = &NotifyExec{}, &NotifyWebhook{}
	c.FenceDevices, c.FenceLevels = []FenceDevice{DefaultFenceDevice()}, []FenceLevel{{}}
	wd := DefaultWatchdog()
	c.Watchdog = &wd
	tn := DefaultTwoNode()
	c.TwoNode = &tn
	return c
}

func isLeaf(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		return false
	case reflect.Pointer, reflect.Slice:
		return isLeaf(t.Elem())
	}
	return true
}

// schemaFields walks v's yaml fields recursively, naming list items "[]".
func schemaFields(v reflect.Value, prefix string, out map[string]schemaField) {
	for i := range v.NumField() {
		name := yamlName(v.Type().Field(i))
		if name == "" {
			continue
		}
		fv, path := v.Field(i), join(prefix, name)
		out[path] = schemaField{typ: fv.Type(), def: fv}
		if isLeaf(fv.Type()) || fv.Kind() == reflect.Pointer && fv.IsNil() || fv.Kind() == reflect.Slice && fv.Len() == 0 {
			continue
		}
		switch fv.Kind() {
		case reflect.Pointer:
			schemaFields(fv.Elem(), path, out)
		case reflect.Slice:
			schemaFields(fv.Index(0), path+"[]", out)
		default:
			schemaFields(fv, path, out)
		}
	}
}

// docType is how docs/config.md names a Go type (see its "Value types").
func docType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "duration"
	case reflect.TypeFor[Failback]():
		return "failback"
	case reflect.TypeFor[Bytes]():
		return "size"
	case reflect.TypeFor[StringList]():
		return "string or list"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "mapping"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list of strings"
		}
		return "list of mappings"
	}
	return "unknown type " + t.String()
}

var firstLiteral = regexp.MustCompile("^`([^`]+)`")
var kindLiteral = regexp.MustCompile("(vip|exec|ocf) `([^`]+)`")

// sameValue reports whether literal (as written in the docs) equals v.
func sameValue(literal string, v reflect.Value) (bool, error) {
	switch v.Interface().(type) {
	case Duration:
		d, err := ParseDuration(literal)
		return Duration(d) == v.Interface().(Duration), err
	case Failback:
		f, err := ParseFailback(literal)
		return f == v.Interface().(Failback), err
	case Bytes:
		b, err := ParseBytes(literal)
		return Bytes(b) == v.Interface().(Bytes), err
	}
	switch v.Kind() {
	case reflect.String:
		return literal == v.String(), nil
	case reflect.Int:
		n, err := strconv.Atoi(literal)
		return int64(n) == v.Int(), err
	case reflect.Float64:
		f, err := strconv.ParseFloat(literal, 64)
		return f == v.Float(), err
	case reflect.Bool:
		b, err := strconv.ParseBool(literal)
		return b == v.Bool(), err
	}
	return false, fmt.Errorf("cannot compare a default of type %s", v.Type())
}

// TestDocsMatchSchema keeps docs/config.md true: every yaml field is
// documented with its type, nothing else is, and a default written as a
// literal equals the code's.
func TestDocsMatchSchema(t *testing.T) {
	rows := readDocRows(t)
	fields := map[string]schemaField{}
	schemaFields(reflect.ValueOf(defaultsSample()), "", fields)
	if len(fields) < 50 {
		t.Fatalf("found only %d schema fields; the walk is broken", len(fields))
	}
	checked := 0
	for path, f := range fields {
		row, ok := rows[path]
		if !ok {
			t.Errorf("field %s is not documented in docs/config.md", path)
			continue
		}
		if want := docType(f.typ); row.typ != want {
			t.Errorf("docs/config.md:%d: %s has type %q, want %q", row.line, path, row.typ, want)
		}
		m := firstLiteral.FindStringSubmatch(row.defaultIs)
		if m == nil || strings.Contains(m[1], "<") {
			continue // "required", "none", or a rule in words
		}
		if same, err := sameValue(m[1], f.def); err != nil || !same {
			t.Errorf("docs/config.md:%d: %s default is documented as %q, code has %v (%v)", row.line, path, m[1], f.def, err)
		}
		checked++
	}
	for path, row := range rows {
		if _, ok := fields[path]; !ok {
			t.Errorf("docs/config.md:%d: %s is documented but is not a field", row.line, path)
		}
	}
	if checked < 20 {
		t.Errorf("only %d documented defaults were compared with the code", checked)
	}
}

// TestDocsKindDefaults checks the per-kind defaults written as "vip `1s`".
func TestDocsKindDefaults(t *testing.T) {
	rows := readDocRows(t)
	found := 0
	for path, row := range rows {
		field, ok := strings.CutPrefix(path, "groups[].resources[].")
		if !ok || strings.Contains(field, ".") {
			continue
		}
		for _, m := range kindLiteral.FindAllStringSubmatch(row.defaultIs, -1) {
			r := DefaultResource(m[1])
			fields := map[string]schemaField{}
			schemaFields(reflect.ValueOf(r), "groups[].resources[]", fields)
			if same, err := sameValue(m[2], fields[path].def); err != nil || !same {
				t.Errorf("docs/config.md:%d: %s default for %s is documented as %q, code has %v", row.line, path, m[1], m[2], fields[path].def)
			}
			found++
		}
	}
	if found < 2 {
		t.Errorf("found %d per-kind defaults in the docs, want the vip and ocf monitor intervals", found)
	}
}
