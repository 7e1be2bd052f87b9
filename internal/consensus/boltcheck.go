package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
)

// checkBolt reads a bbolt file image the way bbolt would and reports the
// first inconsistency that would make bbolt panic, fault on its memory
// map, or hand raft something other than what was written: bad meta pages,
// a truncated file, a page out of bounds or referenced twice, elements
// outside their page, keys out of order, a free page that is also in use.
// It returns the contents of the top-level buckets for the raft-level
// checks: raft-boltdb keeps nothing else (no top-level values, no nested
// buckets), so anything else is damage too.
//
// bbolt itself cannot be used for this: it reads through an mmap, where a
// truncated file or a wild page id is a memory fault that no recover()
// catches, and its own consistency check runs on a goroutine of its own.
// Here every read is a bounds-checked slice of the file's bytes.
func checkBolt(data []byte) (map[string][][2][]byte, error) {
	m, pageSize, err := boltMeta(data)
	if err != nil {
		return nil, err
	}
	w := &boltWalker{data: data, pageSize: pageSize, hwm: m.pgid, seen: map[uint64]bool{}}
	if m.pgid < 2 || m.pgid > uint64(len(data))/pageSize {
		return nil, fmt.Errorf("the file is %d bytes, but its pages reach to byte %d (truncated?)", len(data), m.pgid*pageSize)
	}
	top := map[string][][2][]byte{}
	err = w.walk(m.root, nil, nil, nil, 0, func(k, v []byte, bucket bool) error {
		if !bucket {
			return fmt.Errorf("top-level key %q is not a bucket", k)
		}
		var kvs [][2][]byte
		err := w.bucket(v, 1, func(k2, v2 []byte, b2 bool) error {
			if b2 {
				return fmt.Errorf("bucket %q holds a bucket", k)
			}
			kvs = append(kvs, [2][]byte{k2, v2})
			return nil
		})
		top[string(k)] = kvs
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return nil, err
		}
	}
	return top, nil
}

const (
	boltMagic         = 0xED0CDAED
	boltVersion       = 2
	noFreelist        = ^uint64(0)
	pageHeaderSize    = 16
	branchElementSize = 16
	leafElementSize   = 16
	bucketHeaderSize  = 16
	pageBranch        = 0x01
	pageLeaf          = 0x02
	pageMeta          = 0x04
	pageFreelist      = 0x10
	leafIsBucket      = 0x01
	maxDepth          = 64
)

var ne = binary.NativeEndian // bbolt writes its structures in host order

type boltMetaPage struct {
	pageSize, root, freelist, pgid, txid uint64
}

// readMeta decodes the meta structure at off, nil when it does not
// validate (magic, version, checksum), as bbolt's Meta.Validate.
func readMeta(data []byte, off uint64) *boltMetaPage {
	if off+pageHeaderSize+64 > uint64(len(data)) {
		return nil
	}
	b := data[off+pageHeaderSize : off+pageHeaderSize+64]
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion {
		return nil
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if h.Sum64() != ne.Uint64(b[56:]) {
		return nil
	}
	return &boltMetaPage{pageSize: uint64(ne.Uint32(b[8:])), root: ne.Uint64(b[16:]), freelist: ne.Uint64(b[32:]), pgid: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:])}
}

// boltMeta picks the meta page bbolt would use: the valid one with the
// higher transaction id.
func boltMeta(data []byte) (*boltMetaPage, uint64, error) {
	first := readMeta(data, 0)
	if first == nil {
		// bbolt then looks for the second meta page at every page size
		for i := 0; i <= 14 && first == nil; i++ {
			first = readMeta(data, 1024<<i)
		}
	}
	if first == nil {
		return nil, 0, errors.New("neither meta page is valid (not a bbolt file, or both are damaged)")
	}
	ps := first.pageSize
	if ps < 1024 || ps > 16<<20 || bits.OnesCount64(ps) != 1 {
		return nil, 0, fmt.Errorf("page size %d is not a power of two from 1 KiB to 16 MiB", ps)
	}
	if uint64(len(data)) < 2*ps {
		return nil, 0, fmt.Errorf("the file is %d bytes, less than its two meta pages", len(data))
	}
	m0, m1 := readMeta(data, 0), readMeta(data, ps)
	m := m0
	if m == nil || (m1 != nil && m1.txid > m.txid) {
		m = m1
	}
	if m == nil || m.pageSize != ps {
		return nil, 0, errors.New("the meta pages disagree on the page size")
	}
	return m, ps, nil
}

type boltWalker struct {
	data     []byte
	pageSize uint64
	hwm      uint64
	seen     map[uint64]bool
}

// page returns page id and its overflow pages, checking that they lie below
// the high-water mark and inside the file and that no other reference
// claimed them.
func (w *boltWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d is outside the database (pages 2 to %d)", id, w.hwm-1)
	}
	off := id * w.pageSize
	if off+pageHeaderSize > uint64(len(w.data)) {
		return nil, fmt.Errorf("page %d lies past the end of the file", id)
	}
	hdr := w.data[off:]
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d identifies itself as page %d", id, got)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= w.hwm || id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the database", id, overflow)
	}
	end := off + (1+overflow)*w.pageSize
	if end > uint64(len(w.data)) {
		return nil, fmt.Errorf("page %d lies past the end of the file", id)
	}
	for p := id; p <= id+overflow; p++ {
		if w.seen[p] {
			return nil, fmt.Errorf("page %d is referenced twice", p)
		}
		w.seen[p] = true
	}
	return w.data[off:end], nil
}

// visit receives each key and value of one bucket level, bucket telling
// whether the value is a nested bucket's header.
type visit func(k, v []byte, bucket bool) error

// bucket walks the bucket whose header (and inline page) is v.
func (w *boltWalker) bucket(v []byte, depth int, fn visit) error {
	if len(v) < bucketHeaderSize {
		return fmt.Errorf("a bucket header of %d bytes", len(v))
	}
	if root := ne.Uint64(v); root != 0 {
		return w.walk(root, nil, nil, nil, depth, fn)
	}
	return w.walk(0, v[bucketHeaderSize:], nil, nil, depth, fn)
}

// walk visits the tree rooted at page id, or at the inline page when id
// is 0. Its keys must lie in [lo, hi) (nil: unbounded) and increase: bbolt
// finds a key by the branch keys above it, so a key out of its range is
// a key that is there but not found (the bounds of bbolt's Tx.Check).
func (w *boltWalker) walk(id uint64, inline, lo, hi []byte, depth int, fn visit) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d: the tree is deeper than %d levels (a loop?)", id, maxDepth)
	}
	p := inline
	if id != 0 {
		var err error
		if p, err = w.page(id); err != nil {
			return err
		}
	}
	if len(p) < pageHeaderSize {
		return errors.New("an inline bucket shorter than a page header")
	}
	inOrder := func(i int, prev, key []byte) error {
		if (i > 0 && bytes.Compare(prev, key) >= 0) || (i == 0 && lo != nil && bytes.Compare(key, lo) < 0) || (hi != nil && bytes.Compare(key, hi) >= 0) {
			return fmt.Errorf("page %d: key %d is out of order", id, i)
		}
		return nil
	}
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	switch {
	case flags == pageBranch && id != 0:
		if count == 0 {
			return fmt.Errorf("page %d: a branch page without elements", id)
		}
		var prev []byte
		for i := 0; i < count; i++ {
			e := pageHeaderSize + i*branchElementSize
			if e+branchElementSize > len(p) {
				return fmt.Errorf("page %d: element %d lies outside the page", id, i)
			}
			key, err := slice(p, e, ne.Uint32(p[e:]), ne.Uint32(p[e+4:]))
			if err != nil {
				return fmt.Errorf("page %d: element %d: %w", id, i, err)
			}
			if err := inOrder(i, prev, key); err != nil {
				return err
			}
			prev = key
		}
		for i := 0; i < count; i++ {
			e := pageHeaderSize + i*branchElementSize
			key, _ := slice(p, e, ne.Uint32(p[e:]), ne.Uint32(p[e+4:]))
			next := hi
			if i+1 < count {
				n := e + branchElementSize
				next, _ = slice(p, n, ne.Uint32(p[n:]), ne.Uint32(p[n+4:]))
			}
			if err := w.walk(ne.Uint64(p[e+8:]), nil, key, next, depth+1, fn); err != nil {
				return err
			}
		}
		return nil
	case flags == pageLeaf:
		var prev []byte
		for i := 0; i < count; i++ {
			e := pageHeaderSize + i*leafElementSize
			if e+leafElementSize > len(p) {
				return fmt.Errorf("page %d: element %d lies outside the page", id, i)
			}
			eflags := ne.Uint32(p[e:])
			pos, ksize, vsize := ne.Uint32(p[e+4:]), ne.Uint32(p[e+8:]), ne.Uint32(p[e+12:])
			kv, err := slice(p, e, pos, ksize+vsize)
			if err != nil || ksize+vsize < ksize {
				return fmt.Errorf("page %d: element %d lies outside the page", id, i)
			}
			key, val := kv[:ksize], kv[ksize:]
			if err := inOrder(i, prev, key); err != nil {
				return err
			}
			prev = key
			if err := fn(key, val, eflags&leafIsBucket != 0); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("page %d: flags %#x are not a branch or leaf page", id, flags)
}

// slice returns n bytes at element offset e plus pos, inside p.
func slice(p []byte, e int, pos, n uint32) ([]byte, error) {
	start := uint64(e) + uint64(pos)
	end := start + uint64(n)
	if end > uint64(len(p)) {
		return nil, errors.New("lies outside the page")
	}
	return p[start:end], nil
}

// freelist checks the free pages: inside the database, listed once, and
// none of them in use (a free page in use would be overwritten by the next
// write).
func (w *boltWalker) freelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if ne.Uint16(p[8:]) != pageFreelist {
		return fmt.Errorf("freelist: page %d is not a freelist page", id)
	}
	idx, count := uint64(0), uint64(ne.Uint16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("freelist: page %d is too short", id)
		}
		idx, count = 1, ne.Uint64(p[pageHeaderSize:])
	}
	if count > uint64(len(p)) || pageHeaderSize+(idx+count)*8 > uint64(len(p)) {
		return fmt.Errorf("freelist: %d free pages do not fit in page %d", count, id)
	}
	free := map[uint64]bool{}
	for i := idx; i < idx+count; i++ {
		f := ne.Uint64(p[pageHeaderSize+i*8:])
		switch {
		case f < 2 || f >= w.hwm:
			return fmt.Errorf("freelist: free page %d is outside the database", f)
		case free[f]:
			return fmt.Errorf("freelist: page %d is freed twice", f)
		case w.seen[f]:
			return fmt.Errorf("freelist: page %d is both free and in use", f)
		}
		free[f] = true
	}
	return nil
}
