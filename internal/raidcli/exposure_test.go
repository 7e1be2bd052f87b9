package raidcli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"tandem/internal/nbd"
	"tandem/internal/nbd/wire"
)

func TestLocalOnly(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:10809": true, "[::1]:10809": true, "localhost:10809": true, "unix:/run/x.nbd": true,
		":10809": false, "0.0.0.0:10809": false, "[::]:10809": false, "10.0.0.5:10809": false, "db1:10809": false,
	} {
		if got := localOnly(listen); got != want {
			t.Errorf("localOnly(%q) = %v, want %v", listen, got, want)
		}
	}
}

// freeTCP returns a loopback address nobody listens on (for a moment).
func freeTCP(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitListening waits until addr accepts connections: serve opens its
// control socket before the NBD listener. The probe's slot is freed
// asynchronously, which the callers allow for.
func waitListening(t *testing.T, addr string) {
	waitFor(t, func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raid serve test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	cert, key = dir+"/cert.pem", dir+"/key.pem"
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// TestServeExposure: `raid serve`'s flags reach the NBD server: TLS
// required with --tls-cert, --max-conns refuses the connection over the
// limit, --allow turns away addresses outside it; bad flags are all
// reported before the array is touched.
func TestServeExposure(t *testing.T) {
	c := newCLI(t)
	c.must("create", "--level", "1", "--size", "8M", "--wait", "r1", c.path("m0"), c.path("m1"))
	ctx := context.Background()

	_, err := c.run("serve", "r1", "--max-memory", "1M", "--allow", "10.0.0.300", "--tls-client-ca", "ca.pem", "--stall-timeout", "0s")
	for _, want := range []string{"max memory", "--allow", "--tls-client-ca needs", "--stall-timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad flags: %v; want it to mention %q", err, want)
		}
	}

	cert, key, pool := selfSigned(t, c.dir)
	addr := freeTCP(t)
	stop := c.serveArgs("r1", "--listen", addr, "--tls-cert", cert, "--tls-key", key, "--max-conns", "1")
	waitListening(t, addr)
	var oe *nbd.OptError
	waitFor(t, func() bool { // the probe's slot is freed asynchronously
		_, err := nbd.Dial(ctx, "tcp", addr, "r1")
		if errors.As(err, &oe) && oe.Type == wire.RepErrPolicy {
			return false
		}
		if !errors.As(err, &oe) || oe.Type != wire.RepErrTLSReqd {
			t.Fatalf("plain client of a TLS server: %v", err)
		}
		return true
	})
	var cl *nbd.Client
	waitFor(t, func() bool { // the refused client's slot is freed asynchronously
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cl, err = nbd.NewClientTLS(nc, "r1", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Logf("TLS client: %v", err)
			nc.Close()
		}
		return err == nil
	})
	if _, err := cl.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := nbd.Dial(ctx, "tcp", addr, "r1"); !errors.As(err, &oe) || oe.Type != wire.RepErrPolicy {
		t.Fatalf("a second connection with --max-conns 1: %v", err)
	}
	cl.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	addr = freeTCP(t)
	stop = c.serveArgs("r1", "--listen", addr, "--allow", "10.0.0.0/8")
	waitListening(t, addr)
	if _, err := nbd.Dial(ctx, "tcp", addr, "r1"); err == nil {
		t.Fatal("a client outside --allow was served")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
