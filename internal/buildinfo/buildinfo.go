// Package buildinfo owns what `tandem version` says about the binary: the
// version, the commit it was built from, the Go release and whether it is
// one static binary (no dynamic loader, no libc), as the README promises.
// It imports no tandem package; cmd uses it.
package buildinfo

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set for a release by the linker
// (-ldflags "-X tandem/internal/buildinfo.version=v1.2.3"); without it the
// module version Go stamps (from the VCS tag and commit) stands.
var version string

// Info describes a tandem binary.
type Info struct {
	Version   string
	Commit    string // "" when the build did not record one
	Time      string // the commit's time, RFC 3339
	Modified  bool   // built from a tree with uncommitted changes
	GoVersion string
	Platform  string // GOOS/GOARCH
	CGO       string // the CGO_ENABLED of the build: "0", "1" or ""
	// Interpreter is the dynamic loader the binary asks for ("" for a
	// static binary); InterpErr says why that could not be read.
	Interpreter string
	InterpErr   error
}

// FromBuildInfo reads what the Go toolchain recorded in a binary.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Commit = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "CGO_ENABLED":
			i.CGO = s.Value
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" {
		i.Platform = goos + "/" + goarch
	}
	return i
}

// Version is the running binary's version, without reading the binary.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Read describes the running binary.
func Read() Info {
	var i Info
	if bi, ok := debug.ReadBuildInfo(); ok {
		i = FromBuildInfo(bi)
	} else {
		i = Info{Version: "(devel)"}
	}
	if version != "" {
		i.Version = version
	}
	exe, err := os.Executable()
	if err == nil {
		i.Interpreter, err = Interpreter(exe)
	}
	i.InterpErr = err
	return i
}

// ErrNotELF: the binary is not an ELF file, so whether it is static was not
// read (tandem runs on Linux; a build for another system may be run there).
var ErrNotELF = errors.New("buildinfo: not an ELF binary")

// Interpreter returns the dynamic loader (PT_INTERP) the ELF binary at path
// asks for, or "" when it has none: a static binary, which runs on any
// Linux of its architecture whatever its libc.
func Interpreter(path string) (string, error) {
	r, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("buildinfo: %w", err)
	}
	defer r.Close()
	magic := make([]byte, len(elf.ELFMAG))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != elf.ELFMAG {
		return "", ErrNotELF
	}
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("buildinfo: %s: %w", path, err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("buildinfo: %s: PT_INTERP: %w", path, err)
		}
		return strings.TrimRight(string(b), "\x00"), nil
	}
	return "", nil
}

// String is what `tandem version` prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tandem %s\n", i.Version)
	switch {
	case i.Commit == "":
		b.WriteString("commit:  unknown (built without VCS information: scripts/install.sh stamps it from a git checkout)\n")
	default:
		fmt.Fprintf(&b, "commit:  %s", i.Commit)
		var notes []string
		if i.Time != "" {
			notes = append(notes, i.Time)
		}
		if i.Modified {
			notes = append(notes, "with uncommitted changes")
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "go:      %s %s\n", i.GoVersion, i.Platform)
	b.WriteString("binary:  ")
	switch {
	case i.InterpErr != nil && errors.Is(i.InterpErr, ErrNotELF):
		b.WriteString("not ELF: linking not checked")
	case i.InterpErr != nil:
		fmt.Fprintf(&b, "linking not checked: %v", i.InterpErr)
	case i.Interpreter == "":
		b.WriteString("static (no dynamic loader")
		if i.CGO == "0" {
			b.WriteString("; CGO_ENABLED=0")
		}
		b.WriteString(")")
	default:
		fmt.Fprintf(&b, "dynamically linked (loader %s): build with CGO_ENABLED=0 for one static binary", i.Interpreter)
	}
	b.WriteString("\n")
	return b.String()
}
