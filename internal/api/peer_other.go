//go:build !linux

package api

import "net"

func unixActor(net.Conn) string { return "unix" }

func unixSource(net.Conn) string { return "unix" }
