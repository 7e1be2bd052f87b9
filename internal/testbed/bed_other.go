//go:build !linux

package testbed

import (
	"context"
	"errors"
)

// RunBench needs Linux (network namespaces, nftables).
func RunBench(context.Context, BenchOptions) (BenchResult, error) {
	return BenchResult{}, errors.New("testbed: the failover benchmark needs Linux")
}
