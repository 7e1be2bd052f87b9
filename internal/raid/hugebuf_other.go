//go:build !linux

package raid

// mapHuge: no huge page mappings here; ordinary buffers are used.
func mapHuge(n int) (raw, b []byte) { return nil, nil }

func unmapHuge(raw []byte) {}
