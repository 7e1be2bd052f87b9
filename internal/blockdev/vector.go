package blockdev

// Vectored is implemented by devices that move several buffers to or from
// consecutive offsets in one call (preadv / pwritev). The RAID engine uses
// it to give a member one I/O for chunks that lie apart in memory (a RAID 0
// member's share of a full-stripe write, say), with no gathering copy.
// Like ReadAt and WriteAt, a call transfers every byte or returns an error.
type Vectored interface {
	ReadvAt(bufs [][]byte, off int64) (int, error)
	WritevAt(bufs [][]byte, off int64) (int, error)
}

func vectorLen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}

func (d *File) ReadvAt(bufs [][]byte, off int64) (int, error) {
	if err := checkRange(off, vectorLen(bufs), d.size); err != nil {
		return 0, err
	}
	return readvFull(d.f, bufs, off)
}

func (d *File) WritevAt(bufs [][]byte, off int64) (int, error) {
	if err := checkRange(off, vectorLen(bufs), d.size); err != nil {
		return 0, err
	}
	return writevFull(d.f, bufs, off)
}

// advance drops the first n bytes of bufs (a short transfer).
func advance(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	return bufs
}
