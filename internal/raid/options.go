package raid

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tandem/internal/clock"
	"tandem/internal/events"
)

// Options are the run-time settings of an open array.
type Options struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Events receives health events; nil drops them.
	Events events.Sink
	// Node is put in events' Node field.
	Node string
	// Registerer, when set, gets the array's metrics (tandem_raid_*),
	// unregistered again by Close.
	Registerer prometheus.Registerer
	// RebuildRate limits rebuild and resync, in bytes of member data written
	// per second; 0 means unlimited (md's speed_limit_max is unlimited-ish too).
	RebuildRate int64
	// ProgressEvery is how often RebuildProgress is published (default 10%
	// steps, like mdadm's RebuildNN events).
	ProgressEvery float64
	// BitmapDelay is how long a region must stay idle before its bitmap bit
	// is cleared; clearing later costs nothing, clearing too eagerly costs a
	// synchronous bitmap write for the next write there. Default 5 s (md).
	BitmapDelay time.Duration
	// Force starts a dirty, degraded RAID 5/6 (md's --force): data written by
	// interrupted writes may be either version; untouched data is safe
	// thanks to the journal.
	Force bool
	// WriteBehind is how many bytes of acknowledged writes may wait in
	// memory for the member writes (md's stripe cache plays this part): it
	// lets sequential writes overlap and merge into larger member I/O.
	// Default 32 MiB: four entries of about 2 MiB per data member of a
	// four-data-member array; negative turns it off (every WriteAt writes
	// through).
	WriteBehind int64
	// ReadAhead is how far ahead of a sequential reader the array reads, in
	// four windows read at once. Default 64 MiB: on the disk measured,
	// reads scale with the requests in flight, and 16 → 32 → 64 MiB took
	// RAID 6 from 0.85 to 0.90 to 1.17 of a raw reader at queue depth 1
	// (RAID 0 1.11 → 1.38 → 1.48). Negative turns it off.
	ReadAhead int64
	// NoBackground keeps resync and rebuild from starting on their own;
	// tests then drive them with RunJobs.
	NoBackground bool
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Events == nil {
		o.Events = events.SinkFunc(func(events.Event) {})
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 0.10
	}
	if o.WriteBehind == 0 {
		o.WriteBehind = 32 << 20
	}
	if o.ReadAhead == 0 {
		o.ReadAhead = 64 << 20
	}
	if o.BitmapDelay == 0 {
		o.BitmapDelay = 5 * time.Second
	}
	return o
}

// CreateOptions are the choices made once, at create time.
type CreateOptions struct {
	Name   string
	Level  Level
	Layout Layout
	// Chunk defaults to 64 KiB (md's default since 2010: large enough for
	// sequential throughput, small enough that small writes touch one chunk).
	Chunk int64
	// BitmapChunk is the member data covered by one bitmap bit; default
	// 64 MiB (md's choice for large arrays: a few bits per GiB to resync).
	BitmapChunk int64
	// JournalSize is the write-hole journal ring on each member (RAID 5/6);
	// default 16 MiB, enough for many in-flight partial-stripe writes.
	JournalSize int64
	// NoChecksums turns the per-block CRC-32C off (it is on by default: it
	// is what lets a scrub know which copy is right).
	NoChecksums bool
	// Force overwrites members that carry another array's superblock.
	Force bool
	// AssumeClean skips the initial resync (mdadm --assume-clean): parity
	// and checksums of regions never written are garbage until written or
	// repaired. For members known to be zero, and for benchmarks.
	AssumeClean bool
}

func (c CreateOptions) withDefaults() CreateOptions {
	if c.Chunk == 0 {
		c.Chunk = 64 << 10
	}
	if c.BitmapChunk == 0 {
		c.BitmapChunk = 64 << 20
	}
	if c.JournalSize == 0 {
		c.JournalSize = 16 << 20
	}
	return c
}
