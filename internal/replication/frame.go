package replication

import "fmt"

// FrameKind says what a frame between the two machines carries. The values
// are below 0xf0, the first kind replication/link keeps for itself.
type FrameKind uint8

const (
	// FrameHello is the connect handshake: what Decide needs, the volume
	// size, and which node `resolve --discard` named.
	FrameHello FrameKind = iota + 1
	// FrameState: the sender's role or disk state changed while connected.
	FrameState
	// FrameData: an application write (Off, Data, FUA), in the primary's
	// order; acknowledged by FrameDataAck{Ack: Seq} once it completed on
	// the peer's disk (with FUA: once durable there).
	FrameData
	FrameDataAck
	// FrameFlush: flush every write received before it; acknowledged by
	// FrameFlushAck{Ack: Seq} once durable.
	FrameFlush
	FrameFlushAck
	// FrameBitmap: sync source to target at the start of a resync: the
	// source's dirty regions, its sync id (the target's new Current) and
	// whether the sync is full. FrameBitmapAck: the target's reply with the
	// union of both bitmaps, sent once it recorded itself Inconsistent.
	FrameBitmap
	FrameBitmapAck
	// FrameResyncData: the data of consecutive regions from the source
	// (from Region on, whole regions: a chunk of at most
	// Config.ResyncChunk). The target writes it without FUA and answers
	// nothing for it: the source's FrameFlush that follows covers it.
	FrameResyncData
	// frameResyncAckV1 was protocol 1's answer to each region (written
	// with FUA); no longer sent, and refused.
	frameResyncAckV1
	// FrameResyncDone: every region moved; carries the generation ids and
	// disk state both sides take. FrameResyncDoneAck: the target recorded
	// them.
	FrameResyncDone
	FrameResyncDoneAck
	// FrameVerifyStart asks the peer to run a verify (it holds the
	// reference data: it is primary). FrameVerifyDigest: the reference's
	// digests of consecutive regions from Region (Digests); the peer
	// compares them with its own and answers FrameVerifyResult{Region,
	// Regions, Differ}.
	FrameVerifyStart
	FrameVerifyDigest
	FrameVerifyResult
	// FrameOutdate: the async primary went ahead; the peer records itself
	// Outdated.
	FrameOutdate
	// FrameStale refuses a frame whose epoch is older than the newest the
	// receiver has seen; Epoch is that newest epoch.
	FrameStale
	// FrameReadReq / FrameReadReply: a diskless primary reads through the
	// peer (Ack names the request; the reply has Data or Err).
	FrameReadReq
	FrameReadReply
	// FrameDetached: the sender's disk failed and was detached; the peer
	// treats it as Inconsistent and stops sending it writes.
	FrameDetached
	// FrameRefuse: the sender refused the handshake (Err says why: split
	// brain, unrelated data, sizes differ...); each side drops the link
	// once it has refused and heard the peer's refusal, so both report it.
	FrameRefuse
)

var frameKindNames = [...]string{"", "hello", "state", "data", "data-ack", "flush", "flush-ack", "bitmap", "bitmap-ack",
	"resync-data", "resync-ack (retired)", "resync-done", "resync-done-ack", "verify-start", "verify-digest", "verify-result",
	"outdate", "stale", "read-req", "read-reply", "detached", "refuse"}

func (k FrameKind) String() string {
	if int(k) < len(frameKindNames) && k != 0 {
		return frameKindNames[k]
	}
	return fmt.Sprintf("FrameKind(%d)", uint8(k))
}

// fenced reports whether a frame of kind k changes the receiver's data or
// generation, and is therefore refused when its epoch is older than the
// newest the receiver has seen (S2). Acknowledgements, digests, reads and
// flushes change nothing and pass, so a promotion while connected never
// strands the peer's answers already on the wire, nor the flush a
// demoting primary sends to retire its activity log.
func (k FrameKind) fenced() bool {
	switch k {
	case FrameData, FrameBitmap, FrameResyncData, FrameResyncDone, FrameOutdate:
		return true
	}
	return false
}

// retired reports whether k belongs to an older protocol only: it is
// never sent, and refused.
func (k FrameKind) retired() bool { return k == frameResyncAckV1 }

// BitmapChunkWords bounds a bitmap frame: 64 Ki words (512 KiB, 4 Mi
// regions), within the link's 1 MiB payload.
const BitmapChunkWords = 1 << 16

// MaxChunk bounds Config.ResyncChunk: the data of one resync frame, within
// the link's 1 MiB payload (and what one verify read digests).
const MaxChunk = 1 << 20

// maxVerifyRegions bounds the regions of one verify frame: a chunk of the
// smallest regions (4 KiB).
const maxVerifyRegions = MaxChunk / 4096

// Hello is the handshake's content.
type Hello struct {
	Side
	Size int64
	Mode Mode
	// DiscardNode is the node `resolve --discard` named on the sender
	// ("" none): a resolution can be given on either node.
	DiscardNode string
}

// Frame is one message between the two machines. Every frame carries the
// volume, the sender's newest epoch and a per-connection sequence number;
// the other fields depend on Kind. The link adapter encodes it.
type Frame struct {
	Kind   FrameKind
	Volume VolumeID
	Epoch  Epoch
	Seq    uint64

	Hello *Hello // FrameHello

	Off    int64  // FrameData, FrameReadReq
	Len    int64  // FrameReadReq
	FUA    bool   // FrameData
	Data   []byte // FrameData, FrameResyncData, FrameReadReply
	Ack    uint64 // the Seq acknowledged (acks, FrameReadReq/Reply)
	Region int    // resync and verify frames: the (first) region
	Err    string // acks and replies that failed

	// FrameBitmap, FrameBitmapAck: a chunk of the bitmap, as words of 64
	// regions from word BitsFrom (at most BitmapChunkWords, so a 1 TiB
	// volume's 2 MiB bitmap takes four frames), More if chunks follow;
	// FrameBitmap: the sync id and whether the sync is full.
	BitsFrom int
	Bits     []uint64
	More     bool
	SyncID   GenID
	Full     bool

	// FrameState, FrameResyncDone: the sender's (or, for ResyncDone, both
	// sides' next) ids, disk state and role.
	GenIDs GenIDs
	Disk   DiskState
	Role   Role

	// FrameVerifyDigest: the digests of regions Region, Region+1, ...
	Digests []Digest
	// FrameVerifyResult: Regions regions from Region were compared; those
	// in Differ (ascending) differ (all of them if Err is set: the peer
	// could not read).
	Regions int
	Differ  []int
	Repair  bool // FrameVerifyStart
}
