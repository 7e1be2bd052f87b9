package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"tandem/internal/keyfile"
)

func init() { subcommands = append(subcommands, newKeygenCmd) }

// defaultKeyFile is where the example configuration expects the cluster key.
const defaultKeyFile = "/etc/tandem/cluster.key"

func newKeygenCmd() *cobra.Command {
	var out, token string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen [--out FILE] [--force] | keygen --token FILE [--force]",
		Short: "Write a new cluster key (or, with --token, an API bearer token)",
		Long: "keygen writes 32 random bytes, hex-encoded, mode 0600, to --out (default\n" +
			defaultKeyFile + "). Copy the same key to every node and the witness.\n" +
			"It refuses to replace an existing file unless --force is given.\n" +
			"With --token FILE it writes a random bearer token for the TCP API instead.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if token != "" && cmd.Flags().Changed("out") {
				return exitWith(2, errors.New("keygen: give --out or --token, not both"))
			}
			path, what := out, "cluster key"
			var err error
			if token != "" {
				path, what = token, "API token"
				var tok string
				if tok, err = keyfile.GenerateToken(); err == nil {
					err = keyfile.WriteToken(path, tok, force)
				}
			} else {
				var key []byte
				if key, err = keyfile.Generate(); err == nil {
					err = keyfile.Write(path, key, force)
				}
			}
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w\n(--force replaces it; every member must then get the new %s)", err, what)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote a new %s to %s (mode 0600)\n", what, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", defaultKeyFile, "where to write the cluster key")
	cmd.Flags().StringVar(&token, "token", "", "write an API bearer token to this file instead of a cluster key")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return cmd
}
