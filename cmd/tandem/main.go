// Command tandem is the whole of tandem in one binary: the node agent, the
// witness, the CLI that talks to the agent's API, the RAID tools and the demo.
// It only wires packages together.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"tandem/internal/buildinfo"
)

// subcommands is filled by the init functions of this package's files, one
// file per area (raid.go, config.go, …), so each area wires itself.
var subcommands []func() *cobra.Command

// exitError carries a process exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitWith makes a command end the process with code after printing err.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func init() {
	cobra.AddTemplateFunc("tandemVersion", func() string { return buildinfo.Read().String() })
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "tandem",
		Short: "tandem: a hot-standby cluster manager (two nodes + witness, floating IP, services)",
		Long: "tandem: a hot-standby cluster manager. Two nodes and a witness: one node runs each group\n" +
			"(a floating IP, services, OCF resources, replicated volumes and their file systems), the\n" +
			"other takes over when it dies, hangs or is cut off, fencing it first where the config says\n" +
			"so. `tandem raid` is a software RAID for one machine's own disks.\n\n" +
			"What is not built or not met yet: \"Not finished\" in the README.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version prints what `tandem version` prints; the binary is read
	// only then.
	root.Version = buildinfo.Version()
	root.SetVersionTemplate(`{{tandemVersion}}`)
	for _, mk := range subcommands {
		root.AddCommand(mk())
	}
	return root
}

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "tandem:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}
