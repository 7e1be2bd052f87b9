//go:build !linux

package volumecli

import (
	"context"
	"errors"
	"io"
	"net"
	"os"

	"tandem/internal/peerid"
)

func runBench(context.Context, *globals, benchOptions) (BenchResult, error) {
	return BenchResult{}, errors.New("volume: bench needs Linux (network namespaces)")
}

var errFloorOS = errors.New("volume: the bench's floor needs Linux (fdatasync)")

func floorSecondary(io.ReadWriter, *os.File) error { return errFloorOS }

func floorPrimary(net.Conn, *os.File, *peerid.Set, string) error { return errFloorOS }
