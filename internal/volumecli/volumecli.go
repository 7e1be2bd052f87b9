package volumecli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"tandem/internal/config"
	"tandem/internal/events"
)

// DefaultStateDir is where volumes are recorded unless --state-dir says.
const DefaultStateDir = "/var/lib/tandem"

type globals struct {
	stateDir string
	logLevel string
	out      io.Writer
	errOut   io.Writer
	base     *slog.Logger // the agent's logger, when it runs a replica
}

// Command returns `tandem volume`.
func Command() *cobra.Command {
	g := &globals{}
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Replicated volumes: a block device kept identical on two nodes (sync or async), served over NBD by the primary",
		Long: `Replicated volumes: each of two nodes keeps a replica of the volume on a backing
device (a file, a block device or a tandem raid array); writes on the primary
reach the peer over an encrypted link (sync: acknowledged once durable on both;
async: once durable here, the peer trailing by at most max-lag). After a
disconnect only the regions written meanwhile are resynced. Volumes are recorded
in <state-dir>/volumes; 'up' runs one until 'down' or a signal. See docs/volumes.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			g.out, g.errOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
		},
	}
	cmd.PersistentFlags().StringVar(&g.stateDir, "state-dir", DefaultStateDir, "where volumes are recorded and running volumes keep their control socket")
	cmd.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.AddCommand(createCmd(g), upCmd(g), downCmd(g), statusCmd(g), primaryCmd(g), simpleCmd(g, "secondary", "Demote the volume here (open requests fail; the NBD export stops)"),
		simpleCmd(g, "connect", "Connect to the peer again after disconnect, a split brain or unrelated data"),
		simpleCmd(g, "disconnect", "Drop the link to the peer and stay stand-alone until connect"),
		verifyCmd(g), resolveCmd(g), rateCmd(g), benchCmd(g), benchPeerCmd(g))
	return cmd
}

func (g *globals) logger() *slog.Logger {
	if g.base != nil {
		return g.base
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: lvl}))
}

// auditLog opens the audit log shared with the agent
// (<state-dir>/events.jsonl); nil when it cannot be opened.
func (g *globals) auditLog(log *slog.Logger) *events.Log {
	l, err := events.OpenLog(filepath.Join(g.stateDir, "events.jsonl"), 0)
	if err != nil {
		log.Warn("volume: no audit log", "err", err)
		return nil
	}
	return l
}

// parseSize reads 512, 64K, 64KiB, 10M, 1G, 2GiB (config.ParseBytes).
func parseSize(s string) (int64, error) {
	n, err := config.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("volume: bad size %q (e.g. 512M, 10G)", s)
	}
	return n, nil
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
