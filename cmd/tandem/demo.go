package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/demo"
	"tandem/internal/probe"
)

func init() {
	subcommands = append(subcommands, newDemoCmd, newDemoServiceCmd, newProbeCmd, newHeartbeatFloorCmd)
}

// heartbeat-floor is the baseline of the idle benchmark: it does nothing
// but send one small datagram to each peer every interval and read what
// arrives, the least any Go heartbeat can cost on this machine.
func newHeartbeatFloorCmd() *cobra.Command {
	var listen string
	var peers []string
	var interval time.Duration
	cmd := &cobra.Command{
		Use:    "heartbeat-floor",
		Short:  "Baseline for the idle benchmark: bare UDP heartbeats",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			la, err := net.ResolveUDPAddr("udp", listen)
			if err != nil {
				return exitWith(2, err)
			}
			c, err := net.ListenUDP("udp", la)
			if err != nil {
				return err
			}
			var dst []*net.UDPAddr
			for _, p := range peers {
				a, err := net.ResolveUDPAddr("udp", p)
				if err != nil {
					return exitWith(2, err)
				}
				dst = append(dst, a)
			}
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, _, err := c.ReadFromUDP(buf); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, 120) // about a sealed heartbeat
			for range time.Tick(interval) {
				for _, a := range dst {
					c.WriteToUDP(msg, a)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "local address")
	cmd.Flags().StringArrayVar(&peers, "peer", nil, "peer address (repeatable)")
	cmd.Flags().DurationVar(&interval, "interval", 50*time.Millisecond, "between datagrams")
	return cmd
}

func newDemoCmd() *cobra.Command {
	var asJSON, loopback, keep bool
	var fault string
	var idle time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a 3-process cluster on this machine, kill the active node and show the failover",
		Long: "demo starts node1, node2 and a witness as separate tandem processes — as root each in\n" +
			"its own network namespace with a real floating IP and a client namespace probing it;\n" +
			"otherwise on loopback addresses — runs a small HTTP service as a group, SIGKILLs the\n" +
			"active node and prints the detect / decide / start times, the window the client saw\n" +
			"the service unavailable, and whether two nodes ever answered. It cleans up after\n" +
			"itself, also on Ctrl-C.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts := demo.Options{Loopback: loopback, Keep: keep, Fault: fault, Idle: idle}
			if !asJSON {
				opts.Out = cmd.OutOrStdout()
			}
			res, err := demo.Run(ctx, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			demo.Print(cmd.OutOrStdout(), res)
			if !res.OK {
				return exitWith(1, fmt.Errorf("the demo failover did not go as it must"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&loopback, "loopback", false, "use loopback addresses even as root (no VIP)")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the work directory with the nodes' logs and audit logs")
	cmd.Flags().StringVar(&fault, "fault", "kill", "kill (SIGKILL the active node) or switchover (planned failover to node2)")
	cmd.Flags().DurationVar(&idle, "idle", 0, "first measure the idle agents' CPU and memory for this long (e.g. 30s)")
	return cmd
}

// demo-service is the HTTP service the demo runs as a group: it answers
// every request with the name of the node it runs on.
func newDemoServiceCmd() *cobra.Command {
	var port int
	var all, check bool
	var stopDelay time.Duration
	var trace string
	cmd := &cobra.Command{
		Use:    "demo-service",
		Short:  "The demo's HTTP service (answers with its node's name)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host := os.Getenv("TANDEM_NODE_ADDR")
			if all || host == "" {
				host = "0.0.0.0"
			}
			addr := net.JoinHostPort(host, fmt.Sprint(port))
			if check {
				if host == "0.0.0.0" {
					addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return exitWith(1, err)
				}
				return c.Close()
			}
			name := os.Getenv("TANDEM_NODE")
			if name == "" {
				name, _ = os.Hostname()
			}
			srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second,
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, name) })}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			// --trace: "NODE up|down UNIXNANO" lines, appended when the
			// service starts listening and after it stopped, so a test can
			// check that two nodes never served at once.
			note := func(what string) {
				if trace == "" {
					return
				}
				if f, err := os.OpenFile(trace, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
					fmt.Fprintf(f, "%s %s %d\n", name, what, time.Now().UnixNano())
					f.Close()
				}
			}
			note("up")
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			select {
			case err := <-served:
				note("down")
				return err
			case <-sig:
			}
			// A service that takes its time to shut down (--stop-delay),
			// still serving meanwhile.
			time.Sleep(stopDelay)
			srv.Close()
			note("down")
			return nil
		},
	}
	cmd.Flags().DurationVar(&stopDelay, "stop-delay", 0, "on SIGTERM, keep serving this long before exiting")
	cmd.Flags().StringVar(&trace, "trace", "", "append NODE up|down UNIXNANO lines to this file")
	cmd.Flags().IntVar(&port, "port", 8080, "port")
	cmd.Flags().BoolVar(&all, "all", false, "listen on all addresses (default: $TANDEM_NODE_ADDR)")
	cmd.Flags().BoolVar(&check, "check", false, "only check that the service accepts connections")
	return cmd
}

// probe is the client of the demo and the test bed: it prints one JSON line
// per probe and per ARP request until SIGTERM.
func newProbeCmd() *cobra.Command {
	var urls []string
	var interval, timeout time.Duration
	var arpIface, arpVIP string
	cmd := &cobra.Command{
		Use:    "probe",
		Short:  "Probe URLs every interval and watch ARP for a VIP; JSON lines on stdout",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(urls) == 0 || interval <= 0 || timeout <= 0 {
				return exitWith(2, fmt.Errorf("probe needs --url, a positive --interval and --timeout"))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w := probe.NewWriter(cmd.OutOrStdout())
			done := make(chan struct{})
			if arpVIP != "" {
				vip, err := netip.ParseAddr(arpVIP)
				if err != nil {
					return exitWith(2, err)
				}
				go func() {
					defer close(done)
					if err := probe.WatchARP(ctx, arpIface, vip, 20*time.Millisecond, 15*time.Millisecond,
						func(s probe.ARPSample) { w.Write(probe.Record{ARP: &s}) }); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "probe: arp:", err)
					}
				}()
			} else {
				close(done)
			}
			probe.Run(ctx, probe.Config{Targets: urls, Interval: interval, Timeout: timeout},
				func(s probe.Sample) { w.Write(probe.Record{HTTP: &s}) })
			<-done
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&urls, "url", nil, "URL to probe (repeatable)")
	cmd.Flags().DurationVar(&interval, "interval", 10*time.Millisecond, "between probes")
	cmd.Flags().DurationVar(&timeout, "timeout", 200*time.Millisecond, "per probe")
	cmd.Flags().StringVar(&arpIface, "arp-iface", "", "interface to send ARP requests on")
	cmd.Flags().StringVar(&arpVIP, "arp-vip", "", "VIP whose ARP answers to watch")
	return cmd
}
