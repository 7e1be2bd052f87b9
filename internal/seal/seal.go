// Package seal owns the authentication and encryption of cluster datagrams
// (heartbeats and lease messages): AES-256-GCM under a key derived per sender
// boot from the cluster key, a 24-byte authenticated header, and a replay
// window per sender. It does no I/O. Only the heartbeat adapter imports it.
//
// Why a key per boot: nonces are a per-boot counter, so the key must never be
// reused across restarts of a sender; deriving it from (sender, boot id)
// makes a nonce collision impossible without any persistent counter.
//
// Boot ids only grow (the agent persists its boot number), so a receiver
// never accepts a sender's older boot once it has authenticated a newer
// one: a datagram captured in an earlier life of the sender cannot be
// replayed. Checking a new boot costs a key derivation, so new boots are
// tried at most once per DeriveEvery per sender; older boots are refused
// before any cryptography.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// HeaderSize is the size of the cleartext, authenticated header.
const HeaderSize = 24

// Overhead is what sealing adds to a payload (header + GCM tag).
const Overhead = HeaderSize + 16

const (
	magic0, magic1 = 'T', 'D'
	version        = 1
	flagInsecure   = 0x01
)

// Header is the cleartext part of a datagram.
type Header struct {
	Sender  uint8  // index of the sender among the cluster's voters
	Link    uint8  // index of the link the sender used
	Boot    uint64 // sender's boot id: its start time in ns, so boots are ordered
	Counter uint64 // per-boot packet counter, the GCM nonce
	Insec   bool   // sent in plaintext (insecure: true)
}

func (h Header) put(b []byte) {
	b[0], b[1], b[2] = magic0, magic1, version
	b[3] = 0
	if h.Insec {
		b[3] = flagInsecure
	}
	b[4], b[5] = h.Sender, h.Link
	b[6], b[7] = 0, 0
	binary.BigEndian.PutUint64(b[8:], h.Boot)
	binary.BigEndian.PutUint64(b[16:], h.Counter)
}

// ParseHeader reads the header of a datagram without authenticating it.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	if b[0] != magic0 || b[1] != magic1 {
		return Header{}, ErrMagic
	}
	if b[2] != version {
		return Header{}, fmt.Errorf("%w: version %d", ErrMagic, b[2])
	}
	return Header{
		Insec:   b[3]&flagInsecure != 0,
		Sender:  b[4],
		Link:    b[5],
		Boot:    binary.BigEndian.Uint64(b[8:]),
		Counter: binary.BigEndian.Uint64(b[16:]),
	}, nil
}

// Errors by drop reason; callers count drops by these.
var (
	ErrShort    = errors.New("seal: datagram too short")
	ErrMagic    = errors.New("seal: not a tandem datagram")
	ErrAuth     = errors.New("seal: authentication failed (wrong key or tampered)")
	ErrReplay   = errors.New("seal: replayed or too old")
	ErrInsecure = errors.New("seal: plaintext datagram refused (cluster is not insecure)")
	ErrSecure   = errors.New("seal: encrypted datagram but cluster is configured insecure")
	ErrRate     = errors.New("seal: new boot of a sender tried too often (a flood?)")
)

// DeriveEvery is the least time (ns) between two key derivations for new
// boots of one sender: a genuine restart needs one; a flood of forged boots
// costs at most one derivation per sender per DeriveEvery.
const DeriveEvery = int64(20e6)

// DeriveKey derives the per-boot AEAD key of a sender.
func DeriveKey(clusterKey []byte, sender uint8, boot uint64) []byte {
	info := make([]byte, 0, 32)
	info = append(info, "tandem/heartbeat/v1"...)
	info = append(info, sender)
	info = binary.BigEndian.AppendUint64(info, boot)
	k := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, clusterKey, nil, info), k); err != nil {
		panic(err) // hkdf cannot fail for 32 bytes
	}
	return k
}

func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key is always 32 bytes
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

func nonce(counter uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], counter)
	return n
}

// Sealer seals datagrams of one sender boot. Not safe for concurrent use.
type Sealer struct {
	sender  uint8
	boot    uint64
	counter uint64
	aead    cipher.AEAD // nil when insecure
}

// NewSealer returns a sealer for sender; clusterKey nil means insecure mode.
func NewSealer(clusterKey []byte, sender uint8, boot uint64) *Sealer {
	s := &Sealer{sender: sender, boot: boot}
	if clusterKey != nil {
		s.aead = newAEAD(DeriveKey(clusterKey, sender, boot))
	}
	return s
}

// Seal appends the sealed datagram for payload on link to dst.
func (s *Sealer) Seal(dst []byte, link uint8, payload []byte) []byte {
	s.counter++
	h := Header{Sender: s.sender, Link: link, Boot: s.boot, Counter: s.counter, Insec: s.aead == nil}
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	h.put(dst[start:])
	if s.aead == nil {
		return append(dst, payload...)
	}
	return s.aead.Seal(dst, nonce(s.counter), payload, dst[start:start+HeaderSize])
}

// window is the replay window of one sender boot.
type window struct {
	boot    uint64
	aead    cipher.AEAD
	highest uint64
	bits    uint64 // bit i set: highest-i seen
}

const windowSize = 64

func (w *window) check(c uint64) bool {
	switch {
	case c > w.highest:
		return true
	case w.highest-c >= windowSize:
		return false
	default:
		return w.bits&(1<<(w.highest-c)) == 0
	}
}

func (w *window) mark(c uint64) {
	if c > w.highest {
		shift := c - w.highest
		if shift >= windowSize {
			w.bits = 0
		} else {
			w.bits <<= shift
		}
		w.highest = c
	}
	w.bits |= 1 << (w.highest - c)
}

// Opener authenticates datagrams from every sender of the cluster and
// rejects replays. Not safe for concurrent use.
type Opener struct {
	key     []byte // nil: insecure cluster
	senders map[uint8]*window
	// derived is when a key was last derived for a new boot of a sender.
	derived map[uint8]int64
	// derivations counts key derivations (tests, diagnostics).
	derivations uint64
}

// NewOpener returns an opener; clusterKey nil means insecure mode.
func NewOpener(clusterKey []byte) *Opener {
	return &Opener{key: clusterKey, senders: map[uint8]*window{}, derived: map[uint8]int64{}}
}

// Derivations is how many keys the opener has derived.
func (o *Opener) Derivations() uint64 { return o.derivations }

// Open authenticates b and returns its header and payload. now (ns, any
// monotonic origin) paces the key derivations for new boots. The payload
// aliases b.
func (o *Opener) Open(b []byte, now int64) (Header, []byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	if h.Insec != (o.key == nil) {
		if h.Insec {
			return h, nil, ErrInsecure
		}
		return h, nil, ErrSecure
	}
	w := o.senders[h.Sender]
	if w != nil && h.Boot < w.boot {
		return h, nil, ErrReplay // an earlier life of the sender: never again
	}
	cand := w
	if w == nil || h.Boot != w.boot {
		cand = &window{boot: h.Boot}
		if o.key != nil {
			if last, ok := o.derived[h.Sender]; ok && now-last < DeriveEvery {
				return h, nil, ErrRate
			}
			o.derived[h.Sender] = now
			o.derivations++
			cand.aead = newAEAD(DeriveKey(o.key, h.Sender, h.Boot))
		}
	}
	payload := b[HeaderSize:]
	if cand.aead != nil {
		payload, err = cand.aead.Open(payload[:0:0], nonce(h.Counter), payload, b[:HeaderSize])
		if err != nil {
			return h, nil, ErrAuth
		}
	}
	if !cand.check(h.Counter) {
		return h, nil, ErrReplay
	}
	// Only an authenticated datagram may move the window or switch boots.
	cand.mark(h.Counter)
	o.senders[h.Sender] = cand
	return h, payload, nil
}
