package heartbeat

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawBatch is how many datagrams one recvmmsg reads at most: a round's
// datagrams from every peer of a five-voter cluster on two links.
const rawBatch = 8

// rawUDP sends and receives on one link's socket with sendmmsg and
// recvmmsg as raw system calls. The socket is non-blocking (the net
// package made it so), so neither call can block: when nothing is queued,
// or the send buffer is full, the call says EAGAIN and the goroutine waits
// on the runtime's poller as net's own methods do. A raw call is not
// announced to the scheduler, which saves the wake-up of its monitor thread
// that an announced call makes when every processor was idle — that is,
// on every heartbeat of an idle agent.
type rawUDP struct {
	rc  syscall.RawConn
	fam int // AF_INET or AF_INET6, the socket's

	// Send state, under sendMu; sendFn is made once (a closure made per
	// call would be garbage every round).
	sendMu    sync.Mutex
	shdr      []unix.Mmsghdr
	siov      []unix.Iovec
	sname     []unix.RawSockaddrInet6
	pending   []unix.Mmsghdr // the headers of this call still to send
	sent      int
	sendFirst error
	sendFn    func(fd uintptr) bool

	// Receive buffers, used by the link's reader goroutine only.
	rhdr  [rawBatch]unix.Mmsghdr
	riov  [rawBatch]unix.Iovec
	rname [rawBatch]unix.RawSockaddrInet6
	rbuf  [rawBatch][2048]byte
}

// newRawUDP returns c's raw sender and receiver, or nil when its socket is
// not one this file handles (a link-local IPv6 address, whose zone the
// net package resolves; then c's own methods serve).
func newRawUDP(c *net.UDPConn) *rawUDP {
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok || la.Zone != "" {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	fam := 0
	var serr error
	if err := rc.Control(func(fd uintptr) {
		fam, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || serr != nil || (fam != unix.AF_INET && fam != unix.AF_INET6) {
		return nil
	}
	r := &rawUDP{rc: rc, fam: fam}
	r.sendFn = r.sendmmsg
	for i := range r.rhdr {
		r.riov[i].Base = &r.rbuf[i][0]
		r.riov[i].SetLen(len(r.rbuf[i]))
		r.rhdr[i].Hdr.Iov = &r.riov[i]
		r.rhdr[i].Hdr.SetIovlen(1)
		r.rhdr[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.rname[i]))
	}
	return r
}

// putSockaddr writes ap into sa as the socket's family wants it and returns
// its length, or 0 when the socket cannot reach it (IPv6 on an IPv4
// socket, or an address with a zone).
func (r *rawUDP) putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	if a.Zone() != "" {
		return 0
	}
	port := ap.Port()
	if r.fam == unix.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return 0
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}

// addrPort reads the sender's address the way net's ReadFromUDPAddrPort
// returns it.
func (r *rawUDP) addrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(p[0])<<8|uint16(p[1])), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			ifi, err := net.InterfaceByIndex(int(sa.Scope_id))
			if err != nil {
				return netip.AddrPort{}, false
			}
			a = a.WithZone(ifi.Name)
		}
		return netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1])), true
	}
	return netip.AddrPort{}, false
}

// send sends pkts with as few sendmmsg calls as the kernel takes. A
// datagram the kernel refuses (no route, say) is skipped and its error
// returned; a full send buffer waits for room, as net's WriteTo does.
func (r *rawUDP) send(pkts []Packet) (int, error) {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	n := len(pkts)
	if cap(r.shdr) < n {
		r.shdr = make([]unix.Mmsghdr, n)
		r.siov = make([]unix.Iovec, n)
		r.sname = make([]unix.RawSockaddrInet6, n)
	}
	hdr, iov, name := r.shdr[:0], r.siov[:n], r.sname[:n]
	r.sent, r.sendFirst = 0, nil
	for i, p := range pkts {
		l := r.putSockaddr(&name[i], p.To)
		if l == 0 || len(p.Data) == 0 {
			r.sendFirst = firstErr(r.sendFirst, &net.AddrError{Err: "not reachable from this link's socket", Addr: p.To.String()})
			continue
		}
		iov[i].Base = &p.Data[0]
		iov[i].SetLen(len(p.Data))
		h := unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&name[i]))
		h.Hdr.Namelen = l
		h.Hdr.Iov = &iov[i]
		h.Hdr.SetIovlen(1)
		hdr = append(hdr, h)
	}
	r.pending = hdr
	if err := r.rc.Write(r.sendFn); err != nil {
		r.sendFirst = firstErr(r.sendFirst, err)
	}
	r.pending = nil
	return r.sent, r.sendFirst
}

// sendmmsg sends r.pending (rawConn.Write's function: false waits for
// room in the send buffer).
func (r *rawUDP) sendmmsg(fd uintptr) bool {
	for len(r.pending) > 0 {
		m, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&r.pending[0])), uintptr(len(r.pending)), 0, 0, 0)
		switch e {
		case 0:
			r.sent += int(m)
			r.pending = r.pending[m:]
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// The first datagram failed; the ones before it in an earlier
			// call went.
			r.sendFirst = firstErr(r.sendFirst, &net.OpError{Op: "sendmmsg", Net: "udp", Err: e})
			r.pending = r.pending[1:]
		}
	}
	return true
}

// readRaw is the link's reader: whatever is queued, up to rawBatch
// datagrams a call, until the socket is closed.
func (u *UDP) readRaw(link int, r *rawUDP) {
	defer u.wg.Done()
	direct := false
	read := func(fd uintptr) bool { // made once: see sendFn
		for {
			for i := range r.rhdr {
				r.rhdr[i].Hdr.Namelen = unix.SizeofSockaddrInet6
				r.rhdr[i].Hdr.Flags = 0
			}
			m, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.rhdr[0])), rawBatch, unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait on the poller
			default:
				return true // as net's reader does: read again
			}
			for i := range int(m) {
				if from, ok := r.addrPort(&r.rname[i]); ok {
					direct = u.deliver(direct, Datagram{Link: link, From: from, Data: r.rbuf[i][:r.rhdr[i].Len]})
				}
			}
			if int(m) < rawBatch {
				// The queue was empty when the call returned; the
				// poller reports whatever came since (without the
				// EAGAIN call that would only confirm it).
				return false
			}
		}
	}
	for {
		if err := r.rc.Read(read); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
