//go:build !linux

package heartbeat

import "net"

// rawUDP: elsewhere than Linux the net package's methods serve.
type rawUDP struct{}

func newRawUDP(*net.UDPConn) *rawUDP { return nil }

func (*rawUDP) send([]Packet) (int, error) { panic("heartbeat: no raw UDP here") }

func (u *UDP) readRaw(int, *rawUDP) { panic("heartbeat: no raw UDP here") }
