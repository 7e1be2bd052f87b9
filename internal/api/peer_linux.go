package api

import (
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerCred is the process on the other end of a unix socket, nil if it
// cannot be told.
func peerCred(c net.Conn) *unix.Ucred {
	uc, ok := unwrap(c).(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return cred
}

// unixSource is a unix socket client's source for the connection limits:
// its uid.
func unixSource(c net.Conn) string {
	if cred := peerCred(c); cred != nil {
		return "uid " + strconv.Itoa(int(cred.Uid))
	}
	return "unix"
}

// unixActor names the process on the other end of a unix socket by uid.
func unixActor(c net.Conn) string {
	cred := peerCred(c)
	if cred == nil {
		return "unix"
	}
	name := strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("%s(uid %d, pid %d)", name, cred.Uid, cred.Pid)
}
