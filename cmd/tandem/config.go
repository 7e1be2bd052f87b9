package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"tandem/internal/config"
)

func init() { subcommands = append(subcommands, newConfigCmd) }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a configuration file, or print an example",
	}
	var local bool
	var nodeName string
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Report every problem in FILE (exit status 2 if there is any)",
		Long: "validate reads FILE and reports every problem at once, one per line as\n" +
			"FILE:LINE: field.path: what is wrong, and exits with status 2 if there is any.\n" +
			"It checks only the file, so it gives the same answer on any machine.\n\n" +
			"--local also checks this machine as the member it is (--node, else picked as the\n" +
			"agent picks it: the member with a link address on an interface here, else the one\n" +
			"named like the host): its link addresses are addresses of this machine, the key\n" +
			"file loads; on a data node also the token file, the interface of each VIP it may\n" +
			"run, the OCF agents and exec programs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			c, err := config.Load(path)
			self := ""
			if err == nil && local {
				self, err = c.CheckHost(config.ThisHost{}, nodeName)
			}
			if probs := config.AsProblems(err); probs != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
				return exitWith(2, fmt.Errorf("%s: %d problem(s)", path, len(probs)))
			}
			if err != nil {
				return exitWith(2, err)
			}
			if local {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s; this machine is %s)\n", path, c.Summary(), self)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", path, c.Summary())
			return nil
		},
	}
	validate.Flags().BoolVar(&local, "local", false, "also check this machine: the member it is, its addresses and interfaces, key and token files, OCF agents, exec programs")
	validate.Flags().StringVar(&nodeName, "node", "", "with --local: the member this machine is (default: picked as the agent picks it)")
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a commented example configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), config.Example)
			return err
		},
	}
	cmd.AddCommand(validate, example)
	return cmd
}
