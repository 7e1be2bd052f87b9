package consensus

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"golang.org/x/crypto/hkdf"
)

// identities are the TLS identities of the raft transport. Each voter
// presents a certificate for an Ed25519 key derived from the cluster key
// and its own name, with the name in the certificate. A connection is
// accepted only when the key is the one derived for the voter it claims to
// be: the dialler checks the key against the voter whose address it
// dialled, the listener against the name the dialler's hello claims. So a
// connection redirected to another voter, reflected back to its own
// sender, or opened under another voter's name is refused.
//
// Every voter can derive every voter's public key from the cluster key, so
// no public keys need distributing; the flip side is that a holder of the
// cluster key can derive any voter's private key too. The identities stop
// a network attacker from rerouting authenticated connections, not a
// malicious key holder (nothing keyed from one shared secret can).
type identities struct {
	self string
	cert tls.Certificate
	keys map[string]ed25519.PublicKey // every voter, self included
}

// voterKey derives name's transport key from the cluster key.
func voterKey(clusterKey []byte, name string) (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	info := []byte("tandem/consensus-tls/v2 voter\x00" + name)
	if _, err := io.ReadFull(hkdf.New(sha256.New, clusterKey, nil, info), seed); err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func newIdentities(clusterKey []byte, self string, voters []string) (*identities, error) {
	id := &identities{self: self, keys: map[string]ed25519.PublicKey{}}
	for _, v := range voters {
		priv, err := voterKey(clusterKey, v)
		if err != nil {
			return nil, fmt.Errorf("consensus: derive the key of %s: %w", v, err)
		}
		id.keys[v] = priv.Public().(ed25519.PublicKey)
		if v != self {
			continue
		}
		der, err := voterCertificate(v, priv)
		if err != nil {
			return nil, err
		}
		id.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	}
	if id.cert.PrivateKey == nil {
		return nil, fmt.Errorf("consensus: %q is not a voter", self)
	}
	return id, nil
}

func voterCertificate(name string, priv ed25519.PrivateKey) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, fmt.Errorf("consensus: certificate of %s: %w", name, err)
	}
	return der, nil
}

var errIdentity = errors.New("consensus: peer identity")

// voterOf returns the voter whose derived key raw presents. It is never
// this voter itself: a connection from ourselves is a reflection.
func (id *identities) voterOf(raw [][]byte) (string, error) {
	if len(raw) != 1 {
		return "", fmt.Errorf("%w: peer must present exactly one certificate", errIdentity)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return "", fmt.Errorf("%w: %v", errIdentity, err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return "", fmt.Errorf("%w: %v", errIdentity, err)
	}
	name := cert.Subject.CommonName
	want, ok := id.keys[name]
	if !ok {
		return "", fmt.Errorf("%w: certificate names %q, not a voter (or not keyed with this cluster key)", errIdentity, name)
	}
	if p, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !p.Equal(want) {
		return "", fmt.Errorf("%w: certificate for %q does not hold the key derived for it: the peer does not hold the cluster key", errIdentity, name)
	}
	if name == id.self {
		return "", fmt.Errorf("%w: peer presents this voter's own identity (a reflected connection)", errIdentity)
	}
	return name, nil
}

// base is what both sides share: TLS 1.3, our certificate, and a peer
// certificate that must be some other voter's (checked by verify).
func (id *identities) base(verify func(name string) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Chains are not used: a voter's certificate is self-signed and
		// accepted for its derived key alone, checked below.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			name, err := id.voterOf(raw)
			if err != nil {
				return err
			}
			return verify(name)
		},
	}
}

// server accepts any other voter; route then checks that the hello claims
// the voter the certificate is for.
func (id *identities) server() *tls.Config {
	return id.base(func(string) error { return nil })
}

// client accepts only the voter it dials.
func (id *identities) client(to string) *tls.Config {
	cfg := id.base(func(name string) error {
		if name != to {
			return fmt.Errorf("%w: dialled %s but %s answered (a redirected or reflected connection)", errIdentity, to, name)
		}
		return nil
	})
	cfg.ServerName = to
	return cfg
}

// peerName is the voter a server-side TLS connection authenticated.
func (id *identities) peerName(tc *tls.Conn) (string, error) {
	certs := tc.ConnectionState().PeerCertificates
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return id.voterOf(raw)
}
