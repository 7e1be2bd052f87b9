package replication

import (
	"errors"
	"fmt"
	"time"
)

// LagPolicy is what an async primary does when the peer trails by more than
// MaxLagBytes or MaxLagTime.
type LagPolicy uint8

const (
	// Throttle: new writes wait until the peer catches up (the peer never
	// trails by more than max_lag; the client sees added latency).
	Throttle LagPolicy = iota
	// GoAhead: stop sending writes, record them in the dirty bitmap, mark
	// the peer Outdated, and resync once the link has drained (the client
	// sees no added latency; the peer cannot be promoted meanwhile).
	GoAhead
)

func (p LagPolicy) String() string {
	if p == GoAhead {
		return "ahead"
	}
	return "throttle"
}

// Config is the static configuration of one volume's machine on one node.
type Config struct {
	Volume VolumeID
	// Node is this node's name (carried in the handshake; it breaks ties).
	Node string
	// Size of the volume in bytes; both replicas must agree.
	Size int64
	// RegionSize is the dirty-bitmap granularity: a resync moves whole
	// regions. Default 64 KiB: a 1 TiB volume has a 2 MiB bitmap, and a
	// 4 KiB write dirties 16 times its size at worst.
	RegionSize int64
	// ExtentRegions: an activity-log extent spans this many regions.
	// Default 64 (4 MiB extents at the default region size, as DRBD).
	ExtentRegions int
	// ALExtents is how many extents may be active at once: what a primary
	// crash can leave to resync is at most ALExtents extents. Default 64
	// (256 MiB).
	ALExtents int
	Mode      Mode
	// MaxLagBytes / MaxLagTime bound how far an async peer trails: bytes
	// sent and not yet acknowledged, and the age of the oldest of them.
	// Defaults 8 MiB and 2 s.
	MaxLagBytes int64
	MaxLagTime  time.Duration
	OnLag       LagPolicy
	SplitBrain  SplitBrainPolicy
	// ResyncRate limits resync traffic in bytes per second (0: unlimited);
	// `tandem volume rate` changes it live.
	ResyncRate int64
	// ResyncWindow is how many regions a resync keeps in flight, from
	// their read until a flush of both replicas covers them. Default 512
	// (32 MiB at the default region size): the source flushes both
	// replicas every quarter window, and the next quarters stream
	// meanwhile, so neither the link nor the disks wait for a flush
	// (tandem volume bench resynced about a fifth slower with 128 or 256).
	ResyncWindow int
	// VerifyWindow is how many regions a verify keeps in flight, from the
	// reference's read until the peer's answer. Default 128 (8 MiB at the
	// default region size): each side keeps a few chunk reads going, and
	// more in flight only has the two sides' reads contend for their
	// disks (tandem volume bench verified about a sixth slower with 512).
	VerifyWindow int
	// ResyncChunk bounds one read and one frame of a resync or verify:
	// consecutive regions up to this many bytes go together. Default and
	// most MaxChunk (1 MiB, within the link's frame); at least one region
	// whatever it says.
	ResyncChunk int64
	// FenceRetry is the pause before the PeerFencer is asked again after
	// it failed (I/O stays suspended meanwhile). Default 1 s.
	FenceRetry time.Duration
	// NewGenID returns a fresh random generation identifier; the adapter
	// passes one backed by crypto/rand, tests a seeded one. Required.
	NewGenID func() GenID
}

// DefaultConfig returns a configuration with every default set; callers
// fill in Volume, Node, Size and NewGenID.
func DefaultConfig() Config {
	c := Config{}
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.RegionSize == 0 {
		c.RegionSize = 64 << 10
	}
	if c.ExtentRegions == 0 {
		c.ExtentRegions = 64
	}
	if c.ALExtents == 0 {
		c.ALExtents = 64
	}
	if c.MaxLagBytes == 0 {
		c.MaxLagBytes = 8 << 20
	}
	if c.MaxLagTime == 0 {
		c.MaxLagTime = 2 * time.Second
	}
	if c.ResyncWindow == 0 {
		c.ResyncWindow = 512
	}
	if c.VerifyWindow == 0 {
		c.VerifyWindow = 128
	}
	if c.ResyncChunk == 0 {
		c.ResyncChunk = MaxChunk
	}
	if c.FenceRetry == 0 {
		c.FenceRetry = time.Second
	}
}

// Validate returns every problem at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("replication: "+f, a...)) }
	if c.Node == "" {
		bad("node: empty")
	}
	if c.Size <= 0 {
		bad("size: %d, want > 0", c.Size)
	}
	if c.RegionSize < 4096 || c.RegionSize > MaxChunk || c.RegionSize&(c.RegionSize-1) != 0 {
		bad("region size: %d, want a power of two from 4096 to %d (a region travels in one frame)", c.RegionSize, MaxChunk)
	}
	if c.ExtentRegions < 1 {
		bad("extent regions: %d, want at least 1", c.ExtentRegions)
	}
	if c.ALExtents < 1 {
		bad("activity log extents: %d, want at least 1", c.ALExtents)
	}
	if c.Mode > Async {
		bad("mode: %v", c.Mode)
	}
	if c.MaxLagBytes < 0 || c.MaxLagTime < 0 {
		bad("max lag: %d bytes, %v: want >= 0", c.MaxLagBytes, c.MaxLagTime)
	}
	if c.ResyncRate < 0 {
		bad("resync rate: %d, want >= 0", c.ResyncRate)
	}
	if c.ResyncWindow < 1 {
		bad("resync window: %d, want at least 1", c.ResyncWindow)
	}
	if c.VerifyWindow < 1 {
		bad("verify window: %d, want at least 1", c.VerifyWindow)
	}
	if c.ResyncChunk < 0 || c.ResyncChunk > MaxChunk {
		bad("resync chunk: %d bytes, want at most %d", c.ResyncChunk, MaxChunk)
	}
	if c.NewGenID == nil {
		bad("NewGenID: nil")
	}
	return errors.Join(errs...)
}

// chunkRegions is how many regions one resync or verify read may take.
func (c *Config) chunkRegions() int { return max(1, int(c.ResyncChunk/c.RegionSize)) }

// Regions is how many regions the volume has.
func (c *Config) Regions() int { return int((c.Size + c.RegionSize - 1) / c.RegionSize) }
