package heartbeat

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"tandem/internal/clock"
	"tandem/internal/lease"
	"tandem/internal/seal"
)

// TestRunnerDropsAndCountsBadDatagrams runs two real runners over the fake
// network and injects forged, tampered, replayed, plaintext, garbage and
// foreign datagrams: each is dropped and counted, and the peers stay up.
func TestRunnerDropsAndCountsBadDatagrams(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	fn := NewFakeNet(clock.Real{})
	addrs := [][]netip.AddrPort{
		{netip.MustParseAddrPort("10.0.0.1:7789")},
		{netip.MustParseAddrPort("10.0.0.2:7789")},
	}
	voters := []Peer{{Name: "a", Links: 1}, {Name: "b", Links: 1}}
	var runners []*Runner
	for i, name := range []string{"a", "b"} {
		tr, err := fn.Endpoint(name, addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		r := StartRunner(RunnerConfig{
			Engine: Config{Self: i, Voters: voters, ConfigHash: 9, Interval: 20 * time.Millisecond,
				Timeout: 200 * time.Millisecond, Lease: lease.Params{Duration: 200 * time.Millisecond, Drift: 0.01}},
			Key: key, Addrs: addrs, Transport: tr, Clock: clock.Real{},
		})
		runners = append(runners, r)
		defer r.Stop()
	}
	waitUp := func() {
		deadline := time.Now().Add(3 * time.Second)
		for !(runners[0].Up(1) && runners[1].Up(0)) {
			if time.Now().After(deadline) {
				t.Fatal("peers never came up")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUp()
	// Genuine datagrams of a's current boot, sealed with a's own sealer.
	sealA := func(m *Message) []byte {
		runners[0].mu.Lock()
		defer runners[0].mu.Unlock()
		return runners[0].sealer.Seal(nil, 0, mustEncode(t, m))
	}
	genuine := sealA(&Message{Kind: KindHeartbeat, ConfigHash: 9, Round: 1})
	a, b := addrs[0][0], addrs[1][0]
	stranger := netip.MustParseAddrPort("10.9.9.9:7789")
	fn.Inject(a, b, genuine)
	fn.Inject(a, b, genuine) // replay
	tampered := append([]byte(nil), genuine...)
	tampered[len(tampered)-3] ^= 0x40
	fn.Inject(a, b, tampered)
	fn.Inject(a, b, seal.NewSealer(bytes.Repeat([]byte{4}, 32), 0, 2).Seal(nil, 0, []byte("forged")))
	fn.Inject(a, b, seal.NewSealer(nil, 0, 3).Seal(nil, 0, []byte("plaintext")))
	fn.Inject(a, b, []byte("GET / HTTP/1.1\r\n\r\n"))
	fn.Inject(stranger, b, sealA(&Message{Kind: KindHeartbeat, ConfigHash: 9, Round: 1}))
	fn.Inject(a, b, sealA(&Message{Kind: KindHeartbeat, ConfigHash: 8, Round: 1}))
	want := map[string]uint64{DropReplay: 1, DropAuth: 2, DropPlaintext: 1, DropMalformed: 1, DropUnknownSource: 1, DropConfig: 1}
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := runners[1].Drops()
		ok := true
		for k, v := range want {
			ok = ok && got[k] >= v
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drops %v, want at least %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitUp()
}

func mustEncode(t *testing.T, m *Message) []byte {
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
