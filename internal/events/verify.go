package events

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxReported bounds how many bad lines and broken links a report lists; it
// counts all of them.
const maxReported = 100

// Link names one entry of the chain: its seq and the hash the entry after it
// carries as prev. `tandem events --verify` prints the last one (the head) as
// SEQ:HASH; kept elsewhere, it lets a later verification show that the log
// was not cut short or rewritten since.
type Link struct {
	Seq  uint64
	Hash string
}

func (l Link) String() string { return fmt.Sprintf("%d:%s", l.Seq, l.Hash) }

var linkRE = regexp.MustCompile(`^([0-9]+):([0-9a-f]{64})$`) // what String writes

// ParseLink reads the SEQ:HASH form String writes.
func ParseLink(s string) (Link, error) {
	m := linkRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Link{}, fmt.Errorf("events: %q is not SEQ:HASH (a number, a colon and 64 hex digits)", s)
	}
	seq, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return Link{}, fmt.Errorf("events: %q: %w", s, err)
	}
	return Link{Seq: seq, Hash: m[2]}, nil
}

// Break is a broken link of the chain.
type Break struct {
	Line   int    // 1-based line of the entry whose link is wrong
	Seq    uint64 // the seq that entry claims (0 when it has none)
	Reason string
}

func (b Break) String() string {
	if b.Seq == 0 {
		return fmt.Sprintf("line %d: %s", b.Line, b.Reason)
	}
	return fmt.Sprintf("line %d (seq %d): %s", b.Line, b.Seq, b.Reason)
}

// Verification is what Verify found.
type Verification struct {
	Lines      int       // lines read
	Entries    int       // entries, a checkpoint included
	Unchained  int       // entries from before the chain existed, at the start of the log
	Bad        []BadLine // the first lines that are not entries
	BadCount   int
	Breaks     []Break // the first broken links; Breaks[0] is the one to look at
	BreakCount int
	Checkpoint *Event // the compaction checkpoint the log starts from, if any
	First      uint64 // seq of the first chained entry after the checkpoint (0: none)
	Head       Link   // the last entry
	AnchorNote string // what became of the anchor, when it could not be compared
}

// OK reports whether every link holds.
func (v *Verification) OK() bool { return v.BreakCount == 0 }

func (v *Verification) bad(line int, reason string) {
	v.BadCount++
	if len(v.Bad) < maxReported {
		v.Bad = append(v.Bad, BadLine{Line: line, Reason: reason})
	}
}

func (v *Verification) broken(line int, seq uint64, format string, args ...any) {
	v.BreakCount++
	if len(v.Breaks) < maxReported {
		v.Breaks = append(v.Breaks, Break{Line: line, Seq: seq, Reason: fmt.Sprintf(format, args...)})
	}
}

// Verify checks the hash chain of the log read from r. Lines that are not
// entries are skipped and listed; they break no link (the entry after a line
// torn by a crash links to the entry before it), but an entry made unreadable
// does, at the entry after it. After a broken link it goes on from the entry
// that broke it, so every independent break is counted. With anchor (a head
// recorded by an earlier verification), the entry with the anchor's seq must
// still be there, unchanged.
//
// The chain shows changes inside the log. It cannot show that a log was cut
// short at its end, or rewritten as a whole with a new chain: only an anchor
// kept elsewhere shows those.
func Verify(r io.Reader, anchor *Link) (*Verification, error) { return VerifyEach(r, anchor, nil) }

// VerifyEach is Verify that also hands each entry's event (a checkpoint
// included) to fn, in the log's order: one pass reads and checks a log
// (tandem report).
func VerifyEach(r io.Reader, anchor *Link, fn func(Event)) (*Verification, error) {
	v := &Verification{}
	lr := lineReader{r: bufio.NewReaderSize(r, 64<<10)}
	var last *Link
	lastLine, started, anchorSeen := 0, false, false
	for {
		raw, num, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, errTooLong) {
			return v, fmt.Errorf("events: %w", err)
		}
		v.Lines = num
		if err != nil {
			v.bad(num, err.Error())
			continue
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		rec, err := parseRecord(raw)
		if err != nil {
			v.bad(num, err.Error())
			continue
		}
		v.Entries++
		if fn != nil {
			fn(rec.Event)
		}
		here := rec.linkAfter(raw)
		switch {
		case rec.checkpoint():
			if v.Entries > 1 {
				v.broken(num, rec.Seq, "a compaction checkpoint after the first entry: compaction writes one only as the first line")
			} else {
				e := rec.Event
				v.Checkpoint = &e
				started = rec.Seq > 0
			}
		case !rec.chained():
			if started {
				v.broken(num, 0, "an entry without seq and prev after the chain began: it was inserted, or its link removed")
			} else {
				v.Unchained++
			}
		default:
			if v.First == 0 {
				v.First = rec.Seq
			}
			started = true
			switch {
			case last == nil:
				if rec.Seq != 1 || rec.Prev != "" {
					v.broken(num, rec.Seq, "the log starts at seq %d without a compaction checkpoint: the entries before it were removed", rec.Seq)
				}
			case rec.Prev != last.Hash:
				v.broken(num, rec.Seq, "its prev is %s, but the entry before it (line %d, seq %d) hashes to %s: "+
					"that entry was changed, or entries were removed or inserted between them",
					short(rec.Prev), lastLine, last.Seq, short(last.Hash))
			case rec.Seq != last.Seq+1:
				v.broken(num, rec.Seq, "seq %d follows seq %d (line %d): its seq was changed", rec.Seq, last.Seq, lastLine)
			}
		}
		if anchor != nil && !anchorSeen && (rec.chained() || rec.checkpoint()) && here.Seq == anchor.Seq {
			anchorSeen = true
			if here.Hash != anchor.Hash {
				v.broken(num, here.Seq, "the entry recorded as %s reads differently now (hash %s): the log was rewritten", short(anchor.String()), short(here.Hash))
			}
		}
		last, lastLine = &here, num
	}
	if last != nil {
		v.Head = *last
	}
	if anchor != nil && !anchorSeen {
		switch {
		case anchor.Seq > v.Head.Seq:
			v.broken(v.Lines, 0, "the log ends at seq %d, but seq %d was recorded (%s): entries were removed from its end, or it was rewritten",
				v.Head.Seq, anchor.Seq, short(anchor.String()))
		default:
			v.AnchorNote = fmt.Sprintf("seq %d was dropped by compaction: nothing to compare it with", anchor.Seq)
		}
	}
	return v, nil
}

// VerifyFile verifies the log at path.
func VerifyFile(path string, anchor *Link) (*Verification, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer f.Close()
	return Verify(f, anchor)
}

// short abbreviates a hash for a message; the whole of it is in the log.
func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	if h == "" {
		return "empty"
	}
	return h
}

// checkpointMessage says what a compaction dropped.
func checkpointMessage(now time.Time, entries, bad int, cutoff time.Time) string {
	msg := fmt.Sprintf("compaction at %s dropped %s older than %s", rfc3339(now), plural(entries, "entry", "entries"), rfc3339(cutoff))
	if bad > 0 {
		msg += fmt.Sprintf(", and %s among them", plural(bad, "unreadable line", "unreadable lines"))
	}
	return msg
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
