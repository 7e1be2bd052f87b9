package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// checker collects problems, each placed at the line of its field, or of the
// nearest enclosing field the file has.
type checker struct {
	src   *source
	probs Problems
}

func (k *checker) addf(path, format string, args ...any) {
	p := Problem{Path: path, Msg: fmt.Sprintf(format, args...)}
	if k.src != nil {
		p.File = k.src.file
		for q := path; q != ""; q = parentPath(q) {
			if line, ok := k.src.lines[q]; ok {
				p.Line = line
				break
			}
		}
	}
	k.probs = append(k.probs, p)
}

// listPath names item i of the list at path. A StringList written as one
// string has no items in the file, so its only item is the list itself.
func (k *checker) listPath(path string, i, n int) string {
	item := fmt.Sprintf("%s[%d]", path, i)
	if k.src != nil {
		if _, ok := k.src.lines[item]; ok {
			return item
		}
	}
	if n == 1 {
		return path
	}
	return item
}

func (k *checker) name(path, name string) {
	switch {
	case name == "":
		k.addf(path, "required")
	case !nameRE.MatchString(name):
		k.addf(path, "%q is not a valid name (%s)", name, nameRule)
	}
}

// absPath checks an optional path field.
func (k *checker) absPath(path, p string) {
	if p != "" && !filepath.IsAbs(p) {
		k.addf(path, "%q must be an absolute path", p)
	}
}

func (k *checker) requiredAbsPath(path, p string) {
	if p == "" {
		k.addf(path, "required")
	}
	k.absPath(path, p)
}

func (k *checker) atLeast(path string, d Duration, min time.Duration) {
	if d.D() < min {
		k.addf(path, "must be at least %s, got %s", Duration(min), d)
	}
}

func (k *checker) positive(path string, d Duration) {
	if d <= 0 {
		k.addf(path, "must be more than 0, got %s", d)
	}
}

func (k *checker) notNegative(path string, v int64, show string) {
	if v < 0 {
		k.addf(path, "must not be negative, got %s", show)
	}
}

// exactlyOne checks that exactly one of the named alternatives is set, and
// returns how many are.
func (k *checker) exactlyOne(path string, names []string, set ...bool) int {
	var given []string
	for i, ok := range set {
		if ok {
			given = append(given, names[i])
		}
	}
	switch all := strings.Join(names, ", "); len(given) {
	case 0:
		k.addf(path, "give one of %s", all)
	case 1:
	default:
		k.addf(path, "give exactly one of %s, not %s", all, strings.Join(given, " and "))
	}
	return len(given)
}

// uniqueName checks a name, and that no earlier item (in seen, name ->
// path) has it.
func (k *checker) uniqueName(path, name string, seen map[string]string) {
	k.name(path, name)
	if first, dup := seen[name]; dup && name != "" {
		k.addf(path, "%q is already the name of %s", name, first)
	} else if name != "" {
		seen[name] = parentPath(path)
	}
}

// parentPath strips the last field or index from a path.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// isUnder reports whether path lies inside parent.
func isUnder(path, parent string) bool {
	return strings.HasPrefix(path, parent+".") || strings.HasPrefix(path, parent+"[")
}
