package raidcli

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/raid"
)

// Opened is a recorded array assembled inside another tandem process (a
// replicated volume that keeps its replica on it), with the array's
// control socket, so `tandem raid status|fail|add|replace|check` act on
// it as on a served array.
type Opened struct {
	*raid.Array
	cs   *controlServer
	done func()
	reg  *prometheus.Registry
}

// Gatherer gathers the array's metrics (tandem_raid_*), for the process
// that opened it to serve on its own /metrics.
func (o *Opened) Gatherer() prometheus.Gatherer { return o.reg }

// OpenRecorded assembles the array recorded as name in stateDir with the
// options `serve` uses (write-behind on: Flush makes writes durable on
// every member) and starts its control socket. It refuses an array that
// another process serves. Close stops the socket and closes the array.
func OpenRecorded(stateDir, name string, log *slog.Logger) (*Opened, error) {
	g := &globals{stateDir: stateDir, logLevel: "warn", out: io.Discard, errOut: io.Discard}
	rec, err := loadRecord(stateDir, name)
	if err != nil {
		return nil, err
	}
	if g.control(name) != nil {
		return nil, fmt.Errorf("raid: array %s is served by another process (control socket %s); stop it first", name, socketPath(stateDir, name))
	}
	bus, done := g.bus(log)
	o := servedOptions(g.options(log, bus))
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	a, err := g.assemble(target{rec: rec, paths: rec.Members}, o)
	if err != nil {
		done()
		return nil, err
	}
	cs, err := startControl(g, a, rec, reg)
	if err != nil {
		a.Close()
		done()
		return nil, err
	}
	return &Opened{Array: a, cs: cs, done: done, reg: reg}, nil
}

// Close stops the control socket and closes the array.
func (o *Opened) Close() error {
	o.cs.close()
	err := o.Array.Close()
	o.done()
	return err
}
