package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/agentlock"
	"tandem/internal/config"
	"tandem/internal/consensus"
)

func init() { subcommands = append(subcommands, newStateCmd) }

// exitCorruptState is the agent's exit status when its raft state is
// damaged (sysexits' EX_DATAERR). The systemd units do not restart on it:
// restarting cannot help, only `tandem state reset` can.
const exitCorruptState = 65

type stateFlags struct {
	config   string
	stateDir string
}

func (f *stateFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", defaultConfig, "cluster configuration (for state_dir)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "override state_dir from the configuration")
}

// raftDir is where this node's agent keeps its raft state.
func (f *stateFlags) raftDir() (string, error) {
	dir := f.stateDir
	if dir == "" {
		cfg, err := config.Load(f.config)
		if probs := config.AsProblems(err); probs != nil {
			return "", exitWith(2, fmt.Errorf("%s: %d problem(s) (tandem config validate %s); or pass --state-dir", f.config, len(probs), f.config))
		}
		if err != nil {
			return "", exitWith(2, err)
		}
		dir = cfg.StateDir
	}
	return consensus.RaftDir(dir), nil
}

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Check this node's raft state, or move it aside so the node rejoins from its peers",
	}
	var cf stateFlags
	check := &cobra.Command{
		Use:   "check",
		Short: "Check this node's raft state on disk (exit status 65 if it is damaged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := cf.raftDir()
			if err != nil {
				return err
			}
			if err := consensus.CheckStore(dir); err != nil {
				if consensus.IsCorruptState(err) {
					return exitWith(exitCorruptState, fmt.Errorf("%w\n%s", err, recoveryHint(cf)))
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", consensus.StoreFile(dir))
			return nil
		},
	}
	cf.add(check)
	var rf stateFlags
	reset := &cobra.Command{
		Use:   "reset",
		Short: "Move this node's raft state aside (nothing is deleted); the next start rejoins from the peers",
		Long: "reset moves STATE_DIR/raft to STATE_DIR/raft.reset-TIMESTAMP, with the agent stopped.\n" +
			"The next start begins with an empty raft log under the same name and copies the\n" +
			"cluster state (a snapshot and the log after it) from the leader.\n\n" +
			"Reset one voter at a time, and only while the other voters are up and have a\n" +
			"leader (tandem status on another node): a reset voter has forgotten its log and\n" +
			"its votes, and the others must hold what was committed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := rf.raftDir()
			if err != nil {
				return err
			}
			// The agent holds its state directory's lock from its start,
			// before raft opens the store (and while it exits on a damaged
			// one): hold it for the move, so no agent starts meanwhile.
			lock, err := agentlock.Acquire(filepath.Dir(dir), "(tandem state reset)")
			if err != nil {
				return err
			}
			defer lock.Release()
			moved, err := consensus.ResetState(dir, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved %s to %s\n"+
				"Start the agent (systemctl start tandem): it rejoins with an empty log and copies the\n"+
				"cluster state from the leader. When `tandem status` shows it caught up, the moved\n"+
				"directory can be deleted.\n", dir, moved)
			return nil
		},
	}
	rf.add(reset)
	cmd.AddCommand(check, reset)
	return cmd
}

// recoveryHint says what to do about a damaged raft state.
func recoveryHint(f stateFlags) string {
	args := ""
	if f.config != defaultConfig {
		args += " -c " + f.config
	}
	if f.stateDir != "" {
		args += " --state-dir " + f.stateDir
	}
	return "This node cannot start with it, and restarting will not help. To recover, with the\n" +
		"other voters up and a leader among them:\n" +
		"  1. tandem state reset" + args + "\n" +
		"     (moves the raft state aside; nothing is deleted)\n" +
		"  2. start the agent again (systemctl start tandem, or tandem-witness): it rejoins\n" +
		"     with an empty log and copies the cluster state from the leader\n" +
		"See \"Recovering a node's state\" in docs/operations.md."
}
