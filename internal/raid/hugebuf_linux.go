package raid

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapHuge maps n bytes (a multiple of hugePage) aligned to hugePage and
// asks for huge pages. raw is the whole mapping, for unmapHuge. The kernel
// may still use small pages (transparent huge pages off, or no free huge
// page): the buffer works the same, only slower.
func mapHuge(n int) (raw, b []byte) {
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(n+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil
	}
	raw = unsafe.Slice((*byte)(p), n+hugePage)
	skip := (hugePage - int(uintptr(p)%hugePage)) % hugePage
	b = raw[skip : skip+n : skip+n]
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return raw, b
}

func unmapHuge(raw []byte) {
	_ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(raw)), uintptr(len(raw)))
}
