package replication

import (
	"context"
	"errors"
	"testing"
)

func TestMemFencer(t *testing.T) {
	f := NewMemFencer()
	v := VolumeID{9}
	ctx := context.Background()
	f.SetHolder(v, "a", 3)
	if err := f.OutdatePeer(ctx, v, "b", 3); err != nil || !f.Outdated(v, "b") {
		t.Fatalf("holder outdating its peer: %v", err)
	}
	if err := f.OutdatePeer(ctx, v, "a", 3); !errors.Is(err, ErrFenceRefused) {
		t.Fatalf("outdating the holder: %v", err)
	}
	f.SetHolder(v, "b", 4)
	if f.Outdated(v, "b") {
		t.Fatal("the promoted replica is still Outdated")
	}
	if err := f.OutdatePeer(ctx, v, "b", 3); !errors.Is(err, ErrFenceRefused) {
		t.Fatalf("deposed primary outdating the holder: %v", err)
	}
	boom := errors.New("no quorum")
	f.FailWith(boom)
	if err := f.OutdatePeer(ctx, v, "a", 4); !errors.Is(err, boom) {
		t.Fatalf("failing fencer: %v", err)
	}
}
