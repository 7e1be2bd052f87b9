package buildinfo

import (
	"errors"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261202150709-2887c99ad104+dirty"},
		Settings: []debug.BuildSetting{{Key: "CGO_ENABLED", Value: "0"}, {Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
			{Key: "vcs.revision", Value: "2887c99ad1047c5b6b87c55a003e4e950fbe6b2f"}, {Key: "vcs.time", Value: "2026-12-02T15:07:09Z"},
			{Key: "vcs.modified", Value: "true"}}}
	got := FromBuildInfo(bi).String()
	want := "tandem v0.0.0-20261202150709-2887c99ad104+dirty\n" +
		"commit:  2887c99ad1047c5b6b87c55a003e4e950fbe6b2f (2026-12-02T15:07:09Z, with uncommitted changes)\n" +
		"go:      go1.26.8 linux/amd64\n" +
		"binary:  static (no dynamic loader; CGO_ENABLED=0)\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	i := FromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8"})
	i.Interpreter = "/lib64/ld-linux-x86-64.so.2"
	got = i.String()
	for _, w := range []string{"tandem (devel)\n", "commit:  unknown (built without VCS information", "dynamically linked (loader /lib64/ld-linux-x86-64.so.2): build with CGO_ENABLED=0"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
}

func TestInterpreterOfANonELFFile(t *testing.T) {
	p := t.TempDir() + "/script"
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Interpreter(p); !errors.Is(err, ErrNotELF) {
		t.Errorf("got %v, want ErrNotELF", err)
	}
}
