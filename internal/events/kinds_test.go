package events

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
)

// Every Kind constant of the package is known: `tandem events --kind`
// refuses the kinds KnownKinds does not list, so a kind added without it
// could not be selected.
func TestKnownKindsListsEveryConstant(t *testing.T) {
	fs := token.NewFileSet()
	f, err := parser.ParseFile(fs, "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []Kind
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Kind" {
				for _, v := range vs.Values {
					consts = append(consts, Kind(strings.Trim(v.(*ast.BasicLit).Value, `"`)))
				}
			}
		}
	}
	known := KnownKinds()
	if len(consts) < 30 || len(consts)+len(volumeKinds) != len(known) {
		t.Errorf("%d Kind constants, %d known kinds", len(consts), len(known))
	}
	for _, k := range consts {
		if !slices.Contains(known, k) {
			t.Errorf("KnownKinds lacks %q", k)
		}
	}
}

func TestParseKinds(t *testing.T) {
	got, err := ParseKinds("takeover, node_down,,guard_drops")
	if err != nil || !slices.Equal(got, []Kind{Takeover, NodeDown, GuardDrops}) {
		t.Errorf("ParseKinds: %v, %v", got, err)
	}
	_, err = ParseKinds("takeover,bogus")
	if err == nil || !strings.Contains(err.Error(), `unknown kind "bogus"`) ||
		!strings.Contains(err.Error(), "resource_restart") || !strings.Contains(err.Error(), "config_mismatch") {
		t.Errorf("ParseKinds of an unknown kind: %v", err)
	}
}
