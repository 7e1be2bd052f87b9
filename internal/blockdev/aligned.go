package blockdev

import "unsafe"

// Alignment is the buffer and offset alignment O_DIRECT needs here.
const Alignment = 4096

// AlignedBuffer returns n bytes whose address is a multiple of Alignment,
// as devices opened with O_DIRECT require.
func AlignedBuffer(n int) []byte {
	raw := make([]byte, n+Alignment)
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % Alignment); r != 0 {
		off = Alignment - r
	}
	return raw[off : off+n : off+n]
}
