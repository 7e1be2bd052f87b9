package raidcli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/nbd"
)

// exposure is how `raid serve` exposes its NBD export: the limits on what
// clients may hold, TLS, and which addresses may connect.
type exposure struct {
	maxConns     int
	maxMemory    string
	connMemory   string
	stallTimeout time.Duration
	idleTimeout  time.Duration
	tlsCert      string
	tlsKey       string
	tlsClientCA  string
	allow        []string
}

func (x *exposure) flags(cmd *cobra.Command) {
	d := nbd.DefaultLimits()
	f := cmd.Flags()
	f.IntVar(&x.maxConns, "max-conns", d.MaxConns, "NBD connections served at once; more are refused with a reason")
	f.StringVar(&x.maxMemory, "max-memory", fmt.Sprintf("%dM", d.MaxMemory>>20), "payload memory of all NBD requests in flight together (at least 64M)")
	f.StringVar(&x.connMemory, "conn-memory", fmt.Sprintf("%dM", d.ConnMemory>>20), "payload memory of one connection's requests in flight")
	f.DurationVar(&x.stallTimeout, "stall-timeout", d.StallTimeout, "close a connection whose reply makes no progress for this long (the client stopped reading)")
	f.DurationVar(&x.idleTimeout, "idle-timeout", 0, "close a connection that sends nothing for this long with nothing in flight (0: never; kernel clients idle for hours)")
	f.StringVar(&x.tlsCert, "tls-cert", "", "PEM certificate (chain): clients must then use TLS (NBD_OPT_STARTTLS)")
	f.StringVar(&x.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&x.tlsClientCA, "tls-client-ca", "", "PEM CA certificates: clients must present a certificate signed by one (needs --tls-cert)")
	f.StringSliceVar(&x.allow, "allow", nil, "TCP client addresses or prefixes allowed to connect (e.g. 10.0.0.0/24,10.0.1.7); default: any that can reach --listen")
}

// exposureSettings are the flags checked and loaded, ready for a server.
type exposureSettings struct {
	limits nbd.Limits
	tls    *tls.Config
	allow  []netip.Prefix
}

// settings checks the flags (every problem at once) and loads the TLS
// files, before anything is assembled or opened.
func (x *exposure) settings() (exposureSettings, error) {
	var errs []error
	l := nbd.Limits{MaxConns: x.maxConns, StallTimeout: x.stallTimeout, IdleTimeout: x.idleTimeout}
	var err error
	if l.MaxMemory, err = parseSize(x.maxMemory); err != nil {
		errs = append(errs, fmt.Errorf("--max-memory: %w", err))
	}
	if l.ConnMemory, err = parseSize(x.connMemory); err != nil {
		errs = append(errs, fmt.Errorf("--conn-memory: %w", err))
	}
	// Zero would mean the default to the library; on the command line it
	// can only be a mistake.
	if x.maxConns < 1 {
		errs = append(errs, fmt.Errorf("--max-conns %d: must be at least 1", x.maxConns))
	}
	if x.stallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--stall-timeout %v: must be positive (a client that stops reading would pin memory forever)", x.stallTimeout))
	}
	if err := l.Validate(); err != nil {
		errs = append(errs, err)
	}
	st := exposureSettings{limits: l}
	if x.tlsCert != "" || x.tlsKey != "" {
		cfg, err := x.tlsConfig()
		if err != nil {
			errs = append(errs, err)
		}
		st.tls = cfg
	} else if x.tlsClientCA != "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	for _, a := range x.allow {
		p, err := parsePrefix(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("--allow %q: %w", a, err))
			continue
		}
		st.allow = append(st.allow, p)
	}
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("raid: serve: %w", err)
	}
	return st, nil
}

// apply configures srv, which listens on listen, and warns when the export
// is reachable off this machine with neither TLS nor an allow-list.
func (st exposureSettings) apply(srv *nbd.Server, listen string, log *slog.Logger) error {
	err := errors.Join(srv.SetLimits(st.limits), srv.SetAllow(st.allow))
	if st.tls != nil {
		err = errors.Join(err, srv.SetTLS(st.tls, true))
	}
	if err != nil {
		return fmt.Errorf("raid: serve: %w", err)
	}
	if st.tls == nil && len(st.allow) == 0 && !localOnly(listen) {
		log.Warn("raid: serving NBD without TLS or an allow-list on an address other machines can reach: anyone who reaches it can read and overwrite the array (see --tls-cert, --allow)",
			"listen", listen)
	}
	return nil
}

func (x *exposure) tlsConfig() (*tls.Config, error) {
	if x.tlsCert == "" || x.tlsKey == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(x.tlsCert, x.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if x.tlsClientCA != "" {
		pem, err := os.ReadFile(x.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", x.tlsClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// parsePrefix accepts a prefix (10.0.0.0/24) or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// localOnly says whether a --listen address is reachable from this machine
// only: a unix socket or a loopback address. An empty host (":10809") is
// every interface.
func localOnly(listen string) bool {
	if strings.HasPrefix(listen, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
