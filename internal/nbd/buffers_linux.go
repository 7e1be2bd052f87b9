package nbd

import "golang.org/x/sys/unix"

// mapPayload maps n bytes of anonymous memory (page-aligned), or returns
// nil when the kernel refuses, and the caller falls back to the heap.
func mapPayload(n int) []byte {
	p, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	return p
}

// unmapPayload returns p's pages to the system at once.
func unmapPayload(p []byte) {
	if err := unix.Munmap(p); err != nil {
		panic("nbd: munmap payload buffer: " + err.Error()) // a bookkeeping bug, never an I/O condition
	}
}
