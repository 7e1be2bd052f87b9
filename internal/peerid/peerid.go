// Package peerid owns the TLS identities nodes prove to each other on
// tandem's authenticated TCP transports (raft's, the replication link's).
// Each member presents a certificate for an Ed25519 key derived from the
// cluster key, a domain naming the transport and its own name, with the
// name in the certificate. A connection is accepted only when the key is
// the one derived for the member it claims to be: the dialler checks the
// key against the member whose address it dialled, the listener against
// the name the dialler's hello claims. So a connection redirected to
// another member, reflected back to its own sender, or opened under
// another member's name is refused; and, with one domain per transport, a
// connection meant for one transport is refused by another.
//
// Every member can derive every member's public key from the cluster key,
// so no public keys need distributing; the flip side is that a holder of
// the cluster key can derive any member's private key too. The identities
// stop a network attacker from rerouting authenticated connections, not a
// malicious key holder (nothing keyed from one shared secret can).
//
// It imports nothing of tandem's; anything may import it.
package peerid

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

// ErrIdentity is wrapped by every refusal of a peer's certificate.
var ErrIdentity = errors.New("peer identity")

// IsIdentity reports whether err is a refusal of a peer's identity.
func IsIdentity(err error) bool { return errors.Is(err, ErrIdentity) }

// ForeignKeyError is the refusal of a member's certificate whose key is not
// the one our cluster key derives for it: that member, or this one, holds
// another cluster key. Which of the two cannot be told from one
// connection; the caller may know from the other members.
type ForeignKeyError struct{ Name string }

func (e *ForeignKeyError) Error() string {
	return fmt.Sprintf("%v: %s presents a certificate not derived from our cluster key", ErrIdentity, e.Name)
}

func (e *ForeignKeyError) Unwrap() error { return ErrIdentity }

// IsForeignKey reports whether err refused a certificate for another
// cluster key, and names the member it was for.
func IsForeignKey(err error) (string, bool) {
	var fk *ForeignKeyError
	if errors.As(err, &fk) {
		return fk.Name, true
	}
	return "", false
}

// Set is one member's identity and every member's public key, for one
// transport.
type Set struct {
	self string
	cert tls.Certificate
	keys map[string]ed25519.PublicKey // every member, self included
}

// Key derives name's key for domain from the cluster key.
func Key(clusterKey []byte, domain, name string) (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	info := []byte(domain + "\x00" + name)
	if _, err := io.ReadFull(hkdf.New(sha256.New, clusterKey, nil, info), seed); err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// New derives the identities of members (self among them) for domain, a
// string naming the transport and its version; it must never change for
// a transport already deployed, or old and new nodes stop recognising
// each other.
func New(clusterKey []byte, domain, self string, members []string) (*Set, error) {
	s := &Set{self: self, keys: map[string]ed25519.PublicKey{}}
	for _, m := range members {
		priv, err := Key(clusterKey, domain, m)
		if err != nil {
			return nil, fmt.Errorf("peerid: derive the key of %s: %w", m, err)
		}
		s.keys[m] = priv.Public().(ed25519.PublicKey)
		if m != self {
			continue
		}
		der, err := certificate(m, priv)
		if err != nil {
			return nil, err
		}
		s.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	}
	if s.cert.PrivateKey == nil {
		return nil, fmt.Errorf("peerid: %q is not a member", self)
	}
	return s, nil
}

// Self is this member's name.
func (s *Set) Self() string { return s.self }

// Certificate is this member's certificate chain (one self-signed
// certificate), as presented on the wire.
func (s *Set) Certificate() [][]byte { return s.cert.Certificate }

func certificate(name string, priv ed25519.PrivateKey) ([]byte, error) {
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
		return nil, fmt.Errorf("peerid: certificate of %s: %w", name, err)
	}
	return der, nil
}

// MemberOf returns the member whose derived key raw presents. It is never
// this member itself: a connection from ourselves is a reflection.
func (s *Set) MemberOf(raw [][]byte) (string, error) {
	if len(raw) != 1 {
		return "", fmt.Errorf("%w: peer must present exactly one certificate", ErrIdentity)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return "", fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	name := cert.Subject.CommonName
	want, ok := s.keys[name]
	if !ok {
		return "", fmt.Errorf("%w: certificate names %q, not a member (or not keyed with this cluster key)", ErrIdentity, name)
	}
	if p, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !p.Equal(want) {
		return "", &ForeignKeyError{Name: name}
	}
	if name == s.self {
		return "", fmt.Errorf("%w: peer presents this member's own identity (a reflected connection)", ErrIdentity)
	}
	return name, nil
}

// base is what both sides share: TLS 1.3, our certificate, and a peer
// certificate that must be some other member's (checked by verify).
func (s *Set) base(verify func(name string) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Chains are not used: a member's certificate is self-signed and
		// accepted for its derived key alone, checked below.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			name, err := s.MemberOf(raw)
			if err != nil {
				return err
			}
			return verify(name)
		},
	}
}

// Server accepts any other member; the caller then checks that the hello
// claims the member the certificate is for (PeerName).
func (s *Set) Server() *tls.Config {
	return s.base(func(string) error { return nil })
}

// Client accepts only the member it dials.
func (s *Set) Client(to string) *tls.Config {
	cfg := s.base(func(name string) error {
		if name != to {
			return fmt.Errorf("%w: dialled %s but %s answered (a redirected or reflected connection)", ErrIdentity, to, name)
		}
		return nil
	})
	cfg.ServerName = to
	return cfg
}

// PeerName is the member a TLS connection's peer authenticated as.
func (s *Set) PeerName(tc *tls.Conn) (string, error) {
	certs := tc.ConnectionState().PeerCertificates
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	return s.MemberOf(raw)
}
