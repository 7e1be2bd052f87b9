package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration, and where it is.
type Problem struct {
	File string // "" when the config was built in code
	Line int    // 0 when the field is absent from the file
	Path string // field path, e.g. groups[0].resources[1].vip.address
	Msg  string // what is wrong
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a configuration; it is the error Parse,
// Load, Validate and CheckLocal return. Error prints one problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// AsProblems returns the problems err carries, or nil if it carries none.
func AsProblems(err error) Problems {
	var ps Problems
	if errors.As(err, &ps) {
		return ps
	}
	return nil
}

// sorted orders problems as they appear in the file; problems without a line
// (fields absent from the file) come first, in the order they were found.
func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}

// errOrNil keeps a nil Problems from becoming a non-nil error.
func (ps Problems) errOrNil() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}
