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
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Report every problem in FILE (exit status 2 if there is any)",
		Long: "validate reads FILE and reports every problem at once, one per line as\n" +
			"FILE:LINE: field.path: what is wrong, and exits with status 2 if there is any.\n" +
			"It checks only the file, so it gives the same answer on any machine. --local\n" +
			"also checks this machine as a data node: the key and token files load, the\n" +
			"OCF agents and exec programs exist.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			c, err := config.Load(path)
			if err == nil && local {
				err = c.CheckLocal()
			}
			if probs := config.AsProblems(err); probs != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
				return exitWith(2, fmt.Errorf("%s: %d problem(s)", path, len(probs)))
			}
			if err != nil {
				return exitWith(2, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s)\n", path, c.Summary())
			return nil
		},
	}
	validate.Flags().BoolVar(&local, "local", false, "also check this machine: key and token files, OCF agents, exec programs")
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
