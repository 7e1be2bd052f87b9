package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder fills a Config from a yaml.Node tree field by field, so that it
// can reject unknown fields, keep going after a bad value, and remember the
// line of every field it saw. Each struct it creates starts from its
// Default… value, so a field absent from the file keeps its default and a
// field written as zero stays zero.
type decoder struct {
	file  string
	lines map[string]int // field path -> line in file
	probs Problems
}

func (d *decoder) addf(n *yaml.Node, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode stores n into v (addressable), which lives at path.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, seen := d.lines[path]; !seen {
		d.lines[path] = n.Line
	}
	if v.Addr().Type().Implements(unmarshalerType) {
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				d.lines[fmt.Sprintf("%s[%d]", path, i)] = item.Line
			}
		}
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.addf(n, path, "%v", err)
		}
		return
	}
	null := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch v.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(newDefault(v.Type().Elem(), n))
		}
		d.decode(n, path, v.Elem())
	case reflect.Struct:
		if null {
			return // an empty section keeps its defaults
		}
		d.decodeStruct(n, path, v)
	case reflect.Slice:
		if null {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.addf(n, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			s.Index(i).Set(newDefault(v.Type().Elem(), item).Elem())
			d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		d.decodeStringMap(n, path, v, null)
	default:
		d.decodeScalar(n, path, v, null)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Tag == "!!merge" {
			d.decodeMerge(val, path, v)
			continue
		}
		fpath := join(path, key.Value)
		idx, ok := fields[key.Value]
		switch {
		case !ok:
			d.addf(key, fpath, "unknown field (%s)", suggest(key.Value, fieldNames(v.Type())))
			continue
		case seen[key.Value] > 0:
			d.addf(key, fpath, "given twice (first on line %d)", seen[key.Value])
			continue
		}
		seen[key.Value] = key.Line
		d.lines[fpath] = key.Line
		d.decode(val, fpath, v.Field(idx))
	}
}

// decodeMerge applies a YAML merge key ("<<: *defaults") before the keys
// written next to it; they are read after it, so they win.
func (d *decoder) decodeMerge(val *yaml.Node, path string, v reflect.Value) {
	if val.Kind == yaml.AliasNode {
		val = val.Alias
	}
	if val.Kind == yaml.SequenceNode {
		for _, m := range val.Content {
			d.decodeMerge(m, path, v)
		}
		return
	}
	d.decodeStruct(val, path, v)
}

func (d *decoder) decodeStringMap(n *yaml.Node, path string, v reflect.Value, null bool) {
	if null {
		v.SetZero()
		return
	}
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "expected a mapping of names to values, got %s", kindName(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		fpath := join(path, key.Value)
		d.lines[fpath] = key.Line
		if m.MapIndex(reflect.ValueOf(key.Value)).IsValid() {
			d.addf(key, fpath, "given twice")
			continue
		}
		if val.Kind != yaml.ScalarNode {
			d.addf(val, fpath, "expected a plain value, got %s", kindName(val))
			continue
		}
		s := val.Value
		if val.Tag == "!!null" {
			s = ""
		}
		m.SetMapIndex(reflect.ValueOf(key.Value), reflect.ValueOf(s))
	}
	v.Set(m)
}

func (d *decoder) decodeScalar(n *yaml.Node, path string, v reflect.Value, null bool) {
	want := map[reflect.Kind]string{
		reflect.String:  "a string",
		reflect.Int:     "a whole number",
		reflect.Bool:    "true or false",
		reflect.Float64: "a number",
	}[v.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.addf(n, path, "expected %s, got %s", want, kindName(n))
		return
	}
	if null {
		v.SetZero()
		return
	}
	var err error
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Int:
		var i int
		if err = n.Decode(&i); err == nil && n.ShortTag() != "!!int" {
			err = errors.New("not an integer") // yaml.v3 would truncate 1.5 to 1
		}
		if err == nil {
			v.SetInt(int64(i))
		}
	case reflect.Bool:
		var b bool
		if err = n.Decode(&b); err == nil {
			v.SetBool(b)
		}
	case reflect.Float64:
		var f float64
		if err = n.Decode(&f); err == nil {
			v.SetFloat(f)
		}
	default:
		panic("config: no decoder for " + v.Type().String())
	}
	if err != nil {
		d.addf(n, path, "expected %s, got %s", want, kindName(n))
	}
}

// newDefault returns a pointer to a fresh value of t, holding t's defaults.
// A Resource's defaults depend on its kind, read from the node's keys.
func newDefault(t reflect.Type, n *yaml.Node) reflect.Value {
	p := reflect.New(t)
	switch t {
	case reflect.TypeFor[Group]():
		p.Elem().Set(reflect.ValueOf(DefaultGroup()))
	case reflect.TypeFor[Resource]():
		p.Elem().Set(reflect.ValueOf(DefaultResource(kindKey(n))))
	case reflect.TypeFor[VIP]():
		p.Elem().Set(reflect.ValueOf(DefaultVIP()))
	case reflect.TypeFor[Exec]():
		p.Elem().Set(reflect.ValueOf(DefaultExec()))
	case reflect.TypeFor[OCF]():
		p.Elem().Set(reflect.ValueOf(DefaultOCF()))
	case reflect.TypeFor[Volume]():
		p.Elem().Set(reflect.ValueOf(DefaultVolume()))
	case reflect.TypeFor[Filesystem]():
		p.Elem().Set(reflect.ValueOf(DefaultFilesystem()))
	case reflect.TypeFor[NBDExport]():
		p.Elem().Set(reflect.ValueOf(DefaultNBDExport()))
	case reflect.TypeFor[FenceDevice]():
		p.Elem().Set(reflect.ValueOf(DefaultFenceDevice()))
	case reflect.TypeFor[Watchdog]():
		p.Elem().Set(reflect.ValueOf(DefaultWatchdog()))
	case reflect.TypeFor[TwoNode]():
		p.Elem().Set(reflect.ValueOf(DefaultTwoNode()))
	}
	return p
}

// kindKey returns the only resource kind key of mapping n, or "".
func kindKey(n *yaml.Node) string {
	kind := ""
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; slices.Contains(ResourceKinds, k) {
			if kind != "" {
				return ""
			}
			kind = k
		}
	}
	return kind
}

// yamlFields maps the yaml names of t's exported fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// yamlName is the field's yaml key, or "" if the field is not in the file.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// join appends a field name to a path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// suggest names the known field closest to a misspelt one, or lists them all.
func suggest(name string, known []string) string {
	best, bestDist := "", 3 // more than two edits away is not a typo
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "known: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
