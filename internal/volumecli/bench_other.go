//go:build !linux

package volumecli

import (
	"context"
	"errors"
)

func runBench(context.Context, *globals, benchOptions) (BenchResult, error) {
	return BenchResult{}, errors.New("volume: bench needs Linux (network namespaces)")
}
