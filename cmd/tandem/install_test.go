package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// "One static binary": scripts/install.sh builds with CGO_ENABLED=0 and
// installs the binary where the systemd units expect it. The binary says
// its version, commit, Go release and that it is static, and its ELF
// header agrees: no PT_INTERP, so no dynamic loader and no libc.
func TestInstallScriptInstallsOneStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tandem (a minute on a busy machine)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	dest := t.TempDir()
	cmd := exec.Command("sh", "../../scripts/install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+dest)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr/local/bin/tandem")

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for a dynamic loader (PT_INTERP)", bin)
		}
	}
	f.Close()

	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("tandem %s: %v", arg, err)
		}
		v := string(out)
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^tandem \S+\n`),
			regexp.MustCompile(`(?m)^go:      ` + regexp.QuoteMeta(runtime.Version()) + ` ` + runtime.GOOS + `/` + runtime.GOARCH + `$`),
			regexp.MustCompile(`(?m)^binary:  static \(no dynamic loader; CGO_ENABLED=0\)$`),
		} {
			if !want.MatchString(v) {
				t.Errorf("tandem %s does not match %s:\n%s", arg, want, v)
			}
		}
		if _, err := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output(); err == nil &&
			!regexp.MustCompile(`(?m)^commit:  [0-9a-f]{40}( \(|$)`).MatchString(v) {
			t.Errorf("tandem %s built in a git checkout names no commit:\n%s", arg, v)
		}
	}

	if _, err := os.Stat(filepath.Join(dest, "etc/systemd/system", "tandem-drill@.timer")); err != nil {
		t.Errorf("the drill timer is not installed: %v", err)
	}
	for _, unit := range []string{"tandem.service", "tandem-witness.service", "tandem-drill@.service"} {
		data, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system", unit))
		if err != nil {
			t.Errorf("unit not installed: %v", err)
			continue
		}
		if !strings.Contains(string(data), "ExecStart=/usr/local/bin/tandem ") {
			t.Errorf("%s does not run the installed binary", unit)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/share/doc/tandem/README.md")); err != nil {
		t.Errorf("the units' Documentation= is not installed: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dest, "etc/tandem")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/etc/tandem: %v %v", st, err)
	}
	if strings.Contains(string(out), "+ systemctl") {
		t.Errorf("install.sh ran systemctl with DESTDIR set:\n%s", out)
	}
}
