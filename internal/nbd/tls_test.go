package nbd

import (
	"bufio"
	"bytes"
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
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/blockdev"
	"tandem/internal/nbd/wire"
)

// testPKI is a CA with a server certificate for 127.0.0.1/localhost and a
// client certificate, also written to dir under the names libnbd and qemu
// look for (ca-cert.pem, client-cert.pem, client-key.pem; the server's as
// server-cert.pem, server-key.pem).
type testPKI struct {
	dir    string
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, filepath.Join(dir, "ca-cert.pem"), "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		writePEM(t, filepath.Join(dir, name+"-cert.pem"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", keyDER)
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p.server = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.client = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serverTLS is the server's config; with clientAuth, client certificates
// signed by the CA are required.
func (p *testPKI) serverTLS(clientAuth bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}}
	if clientAuth {
		c.ClientCAs, c.ClientAuth = p.pool, tls.RequireAndVerifyClientCert
	}
	return c
}

func (p *testPKI) clientTLS(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, ServerName: "localhost"}
	if withCert {
		c.Certificates = []tls.Certificate{p.client}
	}
	return c
}

func dialTLS(network, addr, export string, config *tls.Config) (*Client, error) {
	nc, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	c, err := NewClientTLS(nc, export, config)
	if err != nil {
		nc.Close()
	}
	return c, err
}

// TestTLSRequired: with TLS required, a plain client is refused with
// NBD_REP_ERR_TLS_REQD (and hung up on for NBD_OPT_EXPORT_NAME), a TLS
// client is served, and with client certificates required, a client
// without one is turned away in the TLS handshake.
func TestTLSRequired(t *testing.T) {
	pki := newTestPKI(t)
	dev := blockdev.NewMem(1 << 20)
	ts := startServerWith(t, func(s *Server) error { return s.SetTLS(pki.serverTLS(true), true) },
		Export{Name: "vol", Device: dev})

	_, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
	var oe *OptError
	if !errors.As(err, &oe) || oe.Type != wire.RepErrTLSReqd {
		t.Fatalf("plain NBD_OPT_GO: got %v, want NBD_REP_ERR_TLS_REQD", err)
	}
	nc, br := rawConn(t, ts)
	sendOption(nc, wire.OptExportName, []byte("vol"))
	waitClosed(t, "plain NBD_OPT_EXPORT_NAME", nc, br)

	if _, err := dialTLS("tcp", ts.tcp, "vol", pki.clientTLS(false)); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	c, err := dialTLS("tcp", ts.tcp, "vol", pki.clientTLS(true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := pattern(256<<10, 4)
	if _, err := c.WriteAtFUA(want, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := c.ReadAt(got, 4096); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read over TLS: %v", err)
	}
	if crash := dev.Crash(); true {
		crash.ReadAt(got, 4096)
		if !bytes.Equal(got, want) {
			t.Fatal("FUA write over TLS not durable")
		}
	}
}

// TestStartTLSRefusals: STARTTLS with data, twice, or on a server without
// TLS gets the errors the spec names; with TLS optional a plain client is
// served.
func TestStartTLSRefusals(t *testing.T) {
	pki := newTestPKI(t)
	ts := startServerWith(t, func(s *Server) error { return s.SetTLS(pki.serverTLS(false), false) },
		Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	plain := dial(t, "tcp", ts.tcp, "vol") // TLS optional
	plain.Close()

	nc, br := rawConn(t, ts)
	sendOption(nc, wire.OptStartTLS, []byte("x"))
	if _, _, err := readOptReply(br, wire.OptStartTLS); !isOptErr(err, wire.RepErrInvalid) {
		t.Errorf("STARTTLS with data: %v, want NBD_REP_ERR_INVALID", err)
	}
	tc, tbr, err := clientStartTLS(nc, br, pki.clientTLS(false))
	if err != nil {
		t.Fatal(err)
	}
	sendOption(tc, wire.OptStartTLS, nil)
	if _, _, err := readOptReply(tbr, wire.OptStartTLS); !isOptErr(err, wire.RepErrInvalid) {
		t.Errorf("second STARTTLS: %v, want NBD_REP_ERR_INVALID", err)
	}
	if _, err := clientInfo(tc, tbr, wire.OptGo, "vol"); err != nil {
		t.Errorf("GO inside TLS: %v", err)
	}

	noTLS := startServer(t, Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	nc, br = rawConn(t, noTLS)
	sendOption(nc, wire.OptStartTLS, nil)
	if _, _, err := readOptReply(br, wire.OptStartTLS); !isOptErr(err, wire.RepErrUnsup) {
		t.Errorf("STARTTLS without TLS: %v, want NBD_REP_ERR_UNSUP", err)
	}
}

func isOptErr(err error, typ uint32) bool {
	var oe *OptError
	return errors.As(err, &oe) && oe.Type == typ
}

// rawConn connects over TCP and exchanges the greeting only.
func rawConn(t testing.TB, ts *testServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.tcp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	br := bufio.NewReader(nc)
	if _, err := clientGreeting(nc, br); err != nil {
		t.Fatal(err)
	}
	return nc, br
}

// TestAllowList: a TCP client outside the allow-list is disconnected
// before the greeting; one inside, and unix-socket clients, are served.
func TestAllowList(t *testing.T) {
	for _, c := range []struct {
		allow   string
		allowed bool
	}{{"127.0.0.0/8", true}, {"10.0.0.0/8", false}, {"::1/128", false}} {
		ts := startServerWith(t, func(s *Server) error {
			return s.SetAllow([]netip.Prefix{netip.MustParsePrefix(c.allow)})
		}, Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
		cl, err := Dial(context.Background(), "tcp", ts.tcp, "vol")
		if (err == nil) != c.allowed {
			t.Errorf("allow %s: 127.0.0.1 got %v", c.allow, err)
		}
		if err == nil {
			cl.Close()
		}
		dial(t, "unix", ts.sock, "vol").Close()
	}
}

// TestTLSRealClients: nbdinfo (libnbd, GnuTLS) and qemu-img connect with
// STARTTLS and the CA, and with a client certificate when the server
// demands one.
func TestTLSRealClients(t *testing.T) {
	need(t, "nbdinfo")
	pki := newTestPKI(t)
	ts := startServerWith(t, func(s *Server) error { return s.SetTLS(pki.serverTLS(true), true) },
		Export{Name: "vol", Device: blockdev.NewMem(1 << 20)})
	port := ts.tcp[strings.LastIndex(ts.tcp, ":")+1:]
	uri := "nbds://localhost:" + port + "/vol?tls-certificates=" + pki.dir
	out := run(t, "nbdinfo", "--size", uri)
	if strings.TrimSpace(out) != "1048576" {
		t.Errorf("nbdinfo over TLS: size %q", out)
	}
	// Without TLS, nbdinfo is refused.
	if b, err := exec.Command("nbdinfo", "--size", "nbd://localhost:"+port+"/vol").CombinedOutput(); err == nil {
		t.Errorf("plain nbdinfo was served: %s", b)
	} else {
		t.Logf("plain nbdinfo refused as it should be: %s", bytes.TrimSpace(b))
	}
	if _, err := exec.LookPath("qemu-img"); err == nil {
		out := run(t, "qemu-img", "info", "--output=json",
			"--object", "tls-creds-x509,id=tls0,endpoint=client,dir="+pki.dir,
			"--image-opts", "driver=nbd,host=localhost,port="+port+",export=vol,tls-creds=tls0")
		if !strings.Contains(out, `"virtual-size": 1048576`) {
			t.Errorf("qemu-img info over TLS: %s", out)
		}
	}
}
