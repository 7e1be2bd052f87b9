//go:build !linux

package demo

import (
	"context"
	"errors"
	"syscall"
	"time"
)

func newNetnsEnv() env { return newLoopbackEnv() }

func killTree(pid int) error { return nil }

// Usage is a process's CPU share and resident memory over a window.
type Usage struct {
	CPUPercent float64 `json:"cpu_percent"`
	RSSMB      float64 `json:"rss_mb"`
}

func (r *run) measureIdle(ctx context.Context, d time.Duration) (map[string]Usage, error) {
	return nil, errors.New("demo: idle measurement needs Linux /proc")
}

func childAttrs(group bool) *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: group} }
