package raid

import (
	"strings"
	"testing"

	"tandem/internal/blockdev"
	"tandem/internal/metapage"
)

// A device whose first 64 KiB are zeros but whose end holds a replicated
// volume's superblock (internal volume metadata) is not free.
func TestClaimableRefusesAVolumesDevice(t *testing.T) {
	d := blockdev.NewMem(1 << 20)
	page := make([]byte, BlockSize)
	metapage.Encode(page, [16]byte{}, metapage.VolumeSuperblock, 0, 1, []byte("volume"))
	d.WriteAt(page, 1<<20-BlockSize)
	if err := Claimable(Member{Name: "v", Dev: d}, UUID{}); err == nil || !strings.Contains(err.Error(), "volume") {
		t.Fatalf("claimable: %v", err)
	}
	if err := Claimable(Member{Name: "new", Dev: blockdev.NewMem(1 << 20)}, UUID{}); err != nil {
		t.Fatalf("a blank device: %v", err)
	}
}
