// Package heartbeat owns failure detection and the quorum lease protocol
// that carries tandem's single-active guarantee (S1):
//
//   - wire.go: the datagram payload (heartbeat rounds, lease requests, acks,
//     releases), pure encoding with golden and fuzz tests;
//   - detector.go: per peer and per link liveness, RTT and loss from
//     rounds and echoes (a path is up only when it works both ways);
//   - engine.go: the pure state machine (Tick / Receive → datagrams to send
//     and changes), combining the detector with internal/lease;
//   - transport.go, udp_linux.go, fake.go: the I/O seam — UDP sockets with
//     sealing (internal/seal), and an in-memory network that drops, delays,
//     duplicates, partitions (also one way) and heals.
//
// It imports leaf packages, internal/lease and internal/seal; internal/node
// wires it.
package heartbeat
