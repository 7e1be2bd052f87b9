package raidcli

import "github.com/spf13/cobra"

func benchCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Measure the array against the raw disk (ratios)", RunE: func(*cobra.Command, []string) error { return nil }}
}
