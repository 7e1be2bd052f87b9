package proc

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// DefaultPath is the PATH of every child: the usual system directories, in
// the order Debian's root shell uses, and nothing inherited from the agent.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env returns a minimal environment (PATH, HOME, LANG) with extra merged on
// top, sorted by name so the child's environment does not depend on map
// order. Children never inherit the agent's own environment: a cluster
// daemon's variables (tokens, proxies, locale) must not leak into services.
func Env(extra map[string]string) []string {
	env := map[string]string{
		"PATH": DefaultPath,
		"HOME": "/",
		"LANG": "C.UTF-8",
	}
	maps.Copy(env, extra)
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// CheckEnvName reports why name cannot be an environment variable name, or
// nil. Names are restricted to the portable shell set so that shell
// scripts (every OCF agent) can read them.
func CheckEnvName(name string) error {
	if name == "" {
		return fmt.Errorf("empty environment variable name")
	}
	for i, c := range name {
		ok := c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return fmt.Errorf("environment variable name %q: only letters, digits and _ (not first a digit)", name)
		}
	}
	return nil
}

// CheckEnvValue reports why value cannot be passed in the environment.
func CheckEnvValue(name, value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("environment variable %s: value contains a NUL byte", name)
	}
	return nil
}

// LookPath resolves file against the PATH found in env (not the agent's own
// PATH, which exec.Command would use). A name with a slash is only checked.
// Errors wrap exec.ErrNotFound, fs.ErrNotExist or fs.ErrPermission.
func LookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, checkExecutable(file)
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + file
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %q in PATH %s", exec.ErrNotFound, file, path)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: %w", path, fs.ErrPermission)
	}
	return nil
}
