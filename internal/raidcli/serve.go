package raidcli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"tandem/internal/nbd"
	"tandem/internal/raid"
)

func serveCmd(g *globals) *cobra.Command {
	var listen, export, rate string
	var x exposure
	cmd := &cobra.Command{
		Use:   "serve NAME | M1 M2 … --listen ADDR",
		Short: "Serve an array as an NBD export until interrupted; fail/remove/add/replace/check then act on it",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			exposed, err := x.settings()
			if err != nil {
				return err
			}
			t, err := g.resolve(args)
			if err != nil {
				return err
			}
			log := g.logger()
			bus, done := g.bus(log)
			defer done()
			o := servedOptions(g.options(log, bus))
			reg := prometheus.NewRegistry()
			o.Registerer = reg
			if rate != "" {
				if o.RebuildRate, err = parseSize(rate); err != nil {
					return err
				}
			}
			a, err := g.assemble(t, o)
			if err != nil {
				return err
			}
			rec, _ := loadRecord(g.stateDir, a.Name())
			cs, err := startControl(g, a, rec, reg)
			if err != nil {
				a.Close()
				return err
			}
			network, addr := "tcp", listen
			if p, ok := strings.CutPrefix(listen, "unix:"); ok {
				network, addr = "unix", p
				if err := removeStaleSocket(p); err != nil {
					cs.close()
					a.Close()
					return err
				}
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				cs.close()
				a.Close()
				return fmt.Errorf("raid: listen %s: %w", listen, err)
			}
			if export == "" {
				export = a.Name()
			}
			geo := a.Geometry()
			srv := nbd.NewServer(log, nbd.Export{
				Name:        export,
				Description: fmt.Sprintf("tandem %s %s, %d members", geo.Level, a.Name(), geo.Members),
				Device:      a,
				// Array.Flush makes every write that returned durable on every
				// member, whichever connection sent it.
				MultiConn: true,
			})
			if err := exposed.apply(srv, listen, log); err != nil {
				ln.Close()
				cs.close()
				a.Close()
				return err
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			fmt.Fprintf(g.out, "serving %s (%d MiB) as NBD export %q on %s; control socket %s\n",
				a.Name(), a.Size()>>20, export, ln.Addr(), socketPath(g.stateDir, a.Name()))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			select {
			case <-ctx.Done():
			case err = <-served:
			}
			srv.Close()
			cs.close()
			if errors.Is(err, nbd.ErrServerClosed) {
				err = nil
			}
			return errors.Join(err, a.Close())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:10809", "address to serve NBD on: HOST:PORT or unix:PATH; the default reaches this machine only, 0.0.0.0:10809 or :10809 every interface")
	cmd.Flags().StringVar(&export, "export", "", "export name (default: the array name)")
	cmd.Flags().StringVar(&rate, "rebuild-rate", "", "limit rebuild and resync to this many bytes per second (e.g. 50M)")
	cmd.Flags().BoolVar(&g.force, "force", false, "start a dirty, degraded RAID 5/6")
	x.flags(cmd)
	return cmd
}

// servedOptions are the array options `serve` runs with (and what
// `tandem raid bench` measures it with): members opened by openMember, with
// O_DIRECT; the array's write-behind on, its readahead off. Measured with
// nbdcopy against nbdkit (docs/nbd.md, "Served from a RAID array"):
// without write-behind every 256 KiB NBD write became one member write and
// writes reached 0.65-0.70 of nbdkit with --flush, with it 0.92-1.18;
// readahead only added a copy to reads that NBD clients already keep many
// of in flight (reads 0.69-0.79 with it, 0.90-1.12 without). Assembly
// refuses an array that is already served (refuseServed). An
// acknowledged write may wait in the queue until a FLUSH or FUA, as NBD
// allows (a disk's write cache does the same); Flush drains it.
func servedOptions(o raid.Options) raid.Options {
	o.WriteBehind, o.ReadAhead = 0, -1 // 0: the default, 32 MiB
	return o
}

// removeStaleSocket clears the way for a unix socket at path: nothing
// there, or a socket nobody answers on (left by a server that died), is
// fine and removed; a live socket or anything else is refused.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raid: listen unix:%s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("raid: listen unix:%s: the path exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("raid: listen unix:%s: another server is listening there", path)
	}
	return os.Remove(path)
}
