package config

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"tandem/internal/keyfile"
)

// CheckLocal checks what must hold on the machine that runs a data node, and
// that Validate cannot know: the key file (and the API token file) can be
// loaded, each OCF agent is installed and executable under its root, and each
// exec program and directory exists. The agent runs it at start, after Parse;
// `tandem config validate --local` runs it on request. It is separate from
// Validate because the same file is validated on machines (a laptop, CI, the
// witness) that do not have the nodes' agents, programs or secrets. The
// witness needs only the key: it checks that with keyfile.Load itself.
func (c *Config) CheckLocal() error {
	k := &checker{src: c.src}
	c.localChecks(k)
	return k.probs.sorted().errOrNil()
}

func (c *Config) localChecks(k *checker) {
	k.keyFile(c)
	k.localNotify(c)
	k.localFence(c)
	if c.API.TCPPort != 0 && c.API.TokenFile != "" {
		if _, err := keyfile.LoadToken(c.API.TokenFile); err != nil {
			k.addf("api.token_file", "%s", strings.TrimPrefix(err.Error(), "keyfile: "))
		}
	}
	for gi, g := range c.Groups {
		for ri, r := range g.Resources {
			path := fmt.Sprintf("groups[%d].resources[%d]", gi, ri)
			if r.OCF != nil {
				k.localOCF(path+".ocf", r.OCF)
			}
			if r.Exec != nil {
				k.localExec(path+".exec", r.Exec)
			}
		}
	}
}

// keyFile checks that the cluster key loads.
func (k *checker) keyFile(c *Config) {
	if !c.Insecure && c.KeyFile != "" {
		if _, err := keyfile.Load(c.KeyFile); err != nil {
			k.addf("key_file", "%s", strings.TrimPrefix(err.Error(), "keyfile: "))
		}
	}
}

// AgentPath is where an OCF agent "provider/type" lives under root.
func AgentPath(root, agent string) string {
	return filepath.Join(root, "resource.d", agent)
}

func (k *checker) localOCF(path string, o *OCF) {
	p := AgentPath(o.Root, o.Agent)
	st, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		k.addf(path+".agent", "%s is not installed here (no %s)", o.Agent, p)
	case err != nil:
		k.addf(path+".agent", "%v", err)
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		k.addf(path+".agent", "%s is not an executable file", p)
	}
}

func (k *checker) localExec(path string, e *Exec) {
	if len(e.Command) > 0 && e.Command[0] != "" {
		prog := e.Command[0]
		if strings.Contains(prog, "/") && !filepath.IsAbs(prog) && e.Dir != "" {
			prog = filepath.Join(e.Dir, prog) // the process starts in dir
		}
		if _, err := exec.LookPath(prog); err != nil {
			k.addf(path+".command[0]", "%q cannot be run here: %v", e.Command[0], lookPathReason(err))
		}
	}
	if e.Dir != "" {
		if st, err := os.Stat(e.Dir); err != nil || !st.IsDir() {
			k.addf(path+".dir", "%s is not a directory here", e.Dir)
		}
	}
}

// lookPathReason drops the program name exec.Error repeats.
func lookPathReason(err error) error {
	if ee, ok := err.(*exec.Error); ok {
		return ee.Err
	}
	return err
}
