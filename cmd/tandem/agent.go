package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"tandem/internal/agentlock"
	"tandem/internal/api"
	"tandem/internal/buildinfo"
	"tandem/internal/config"
	"tandem/internal/consensus"
	"tandem/internal/keyfile"
	"tandem/internal/node"
)

func init() {
	subcommands = append(subcommands,
		func() *cobra.Command { return newAgentCmd("agent", false) },
		func() *cobra.Command { return newAgentCmd("witness", true) })
}

const defaultConfig = "/etc/tandem/tandem.yaml"

type agentFlags struct {
	config   string
	node     string
	stateDir string
	socket   string
	logLevel string
	cpuProf  string
	normal   bool
}

func newAgentCmd(use string, witness bool) *cobra.Command {
	var f agentFlags
	short := "Run the tandem agent of this data node (foreground)"
	if witness {
		short = "Run the tandem witness, the third voter (foreground; it never runs resources)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd, f, witness)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", defaultConfig, "cluster configuration file")
	cmd.Flags().StringVar(&f.node, "node", "", "this node's name (default: the node whose link address is on a local interface, or the host name)")
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "override state_dir from the configuration")
	cmd.Flags().StringVar(&f.socket, "socket", "", "override api.socket from the configuration")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&f.cpuProf, "cpuprofile", "", "write a CPU profile to this file until the agent stops")
	cmd.Flags().BoolVar(&f.normal, "no-realtime", false, "keep normal scheduling (by default the agent runs SCHED_RR when it may, as corosync does)")
	cmd.Flags().MarkHidden("cpuprofile")
	return cmd
}

func runAgent(cmd *cobra.Command, f agentFlags, witness bool) error {
	cfg, err := config.Load(f.config)
	if probs := config.AsProblems(err); probs != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
		return exitWith(2, fmt.Errorf("%s: %d problem(s); nothing started", f.config, len(probs)))
	}
	if err != nil {
		return exitWith(2, err)
	}
	if f.stateDir != "" {
		if cfg.Events.File == cfg.StateDir+"/events.jsonl" {
			cfg.Events.File = f.stateDir + "/events.jsonl"
		}
		cfg.StateDir = f.stateDir
	}
	if f.socket != "" {
		cfg.API.Socket = f.socket
	}
	self, err := whoAmI(cfg, f.node, witness)
	if err != nil {
		return exitWith(2, err)
	}
	// One agent per state directory, taken before anything is bound or
	// opened, so that a second one is told so instead of "address already
	// in use".
	lock, err := agentlock.Acquire(cfg.StateDir, self)
	if err != nil {
		return err
	}
	defer lock.Release()
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return exitWith(2, fmt.Errorf("--log-level: %w", err))
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})).With("node", self)
	if !witness {
		if err := cfg.CheckLocal(); err != nil {
			if probs := config.AsProblems(err); probs != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), probs.Error())
			}
			return exitWith(2, fmt.Errorf("this machine cannot run node %s; nothing started", self))
		}
	}
	if f.cpuProf != "" {
		pf, err := os.Create(f.cpuProf)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(pf)
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One processor: the agent's work is small and mostly waiting, and
		// every hand-off between goroutines on two processors wakes a second
		// thread — on the VM of docs/benchmarks.md that was a third of the
		// idle CPU. Blocking system calls still run on their own threads.
		runtime.GOMAXPROCS(1)
	}
	if err := quietSysmon(); err != nil {
		log.Debug("system monitor keeps its default timer slack", "err", err)
	}
	if !f.normal {
		if err := goRealtime(); err != nil {
			log.Warn("running without real-time scheduling: heartbeats may be late on a loaded machine", "err", err)
		} else {
			go func() {
				for range time.Tick(2 * time.Second) {
					goRealtime() // threads the runtime started since
				}
			}()
		}
	}
	// A damaged raft state is refused before anything starts: it would
	// fail the same way on every restart.
	if err := consensus.CheckStore(consensus.RaftDir(cfg.StateDir)); err != nil {
		return agentStateError(err, f)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), newProcessCollector(), buildInfoMetric())
	n, err := node.Start(node.Options{Config: cfg, Self: self, Logger: log, Registerer: reg})
	if err != nil {
		return agentStateError(err, f)
	}
	defer n.Stop()
	token := ""
	if cfg.API.TCPPort != 0 {
		if token, err = keyfile.LoadToken(cfg.API.TokenFile); err != nil {
			return err
		}
	}
	// The replicas keep their own registries (their control sockets
	// serve them too); /metrics serves both.
	srv := api.NewServer(n, token, prometheus.Gatherers{reg, n.StorageGatherer()}, log)
	defer srv.Close()
	// The API's connections come out of the descriptors heartbeats, raft,
	// resource checks and the audit log need: it gets at most a quarter.
	nofile := openFileLimit()
	limits := api.LimitsFor(nofile)
	srv.SetLimits(limits)
	reg.MustRegister(srv.Collector())
	if nofile != 0 && nofile < 1024 {
		log.Warn("the open-file limit is low; the API is held to a quarter of it", "nofile", nofile,
			"api_max_connections", limits.MaxConns, "api_max_per_source", limits.MaxPerSource)
	}
	if err := srv.ServeUnix(cfg.API.Socket); err != nil {
		return err
	}
	if cfg.API.TCPPort != 0 {
		host := "0.0.0.0"
		if !cfg.API.BindAll {
			me, _ := cfg.NodeByName(self)
			addrs, err := cfg.LinkAddrs(me)
			if err != nil {
				return err
			}
			host = addrs[0].Addr().String()
		}
		if err := srv.ServeTCP(net.JoinHostPort(host, strconv.Itoa(cfg.API.TCPPort))); err != nil {
			return err
		}
	}
	log.Info("agent running", "cluster", cfg.Cluster, "role", map[bool]string{true: "witness", false: "node"}[witness], "socket", cfg.API.Socket)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	return nil
}

// agentStateError gives a damaged raft state its exit status and the way
// out; other errors pass unchanged.
func agentStateError(err error, f agentFlags) error {
	if !consensus.IsCorruptState(err) {
		return err
	}
	return exitWith(exitCorruptState, fmt.Errorf("%w\n%s", err, recoveryHint(stateFlags{config: f.config, stateDir: f.stateDir})))
}

// whoAmI picks this machine's node: --node, else the voter whose link
// address is configured on a local interface, else the host name.
func whoAmI(cfg *config.Config, flag string, witness bool) (string, error) {
	check := func(name string) (string, error) {
		if _, ok := cfg.NodeByName(name); !ok {
			return "", fmt.Errorf("%q is not a node of cluster %s (nodes: %s)", name, cfg.Cluster, voterNames(cfg))
		}
		if cfg.IsWitness(name) != witness {
			if witness {
				return "", fmt.Errorf("%q is a data node: run `tandem agent`", name)
			}
			return "", fmt.Errorf("%q is the witness: run `tandem witness`", name)
		}
		return name, nil
	}
	if flag != "" {
		return check(flag)
	}
	if witness && cfg.Witness != nil {
		return cfg.Witness.Name, nil
	}
	if name := cfg.FindSelf(config.ThisHost{}, func(name string) bool { return cfg.IsWitness(name) == witness }); name != "" {
		return name, nil
	}
	return "", errors.New("cannot tell which node this machine is: no link address is local and the host name is not a node; pass --node")
}

func voterNames(cfg *config.Config) string {
	s := ""
	for i, v := range cfg.Voters() {
		if i > 0 {
			s += ", "
		}
		s += v.Name
	}
	return s
}

// buildInfoMetric is tandem_agent_build_info: 1, labelled with what the
// binary is, so a dashboard shows which version each node runs.
func buildInfoMetric() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_agent_build_info",
		Help:        "1, labelled with the agent binary's version, commit and Go release.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "go_version": bi.GoVersion}})
	g.Set(1)
	return g
}
