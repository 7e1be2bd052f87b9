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

// RunSoak needs Linux (network namespaces, nftables, stress-ng).
func RunSoak(context.Context, SoakOptions) (SoakResult, error) {
	return SoakResult{}, errors.New("testbed: the soak benchmark needs Linux")
}
