package heartbeat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"tandem/internal/durable"
)

// A boot number names one life of an agent. It only grows: the sealer
// derives its key from it (a nonce counter restarts with every boot) and
// receivers refuse a sender's older boots, and a node's heartbeat rounds
// start at boot<<32, so no echo or lease ack from an earlier life — of
// either side — matches a round of this one. NextBoot persists it; a lost
// file falls back on the wall clock in seconds, which has moved on too.

var (
	bootMu   sync.Mutex
	lastBoot uint32
)

// NextBoot returns this life's boot number and records it in path (the
// agent's state directory). path "" keeps it in the process only (tests:
// several runners in one process still get growing boots).
func NextBoot(path string) (uint32, error) {
	bootMu.Lock()
	defer bootMu.Unlock()
	prev := lastBoot
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); perr == nil {
				prev = max(prev, uint32(n))
			}
		case !errors.Is(err, os.ErrNotExist):
			return 0, fmt.Errorf("heartbeat: boot number: %w", err)
		}
	}
	boot := max(prev+1, uint32(time.Now().Unix()))
	if path != "" {
		err := os.MkdirAll(filepath.Dir(path), 0o750)
		if err == nil {
			err = durable.WriteFile(path, []byte(strconv.FormatUint(uint64(boot), 10)+"\n"), 0o640)
		}
		if err != nil {
			return 0, fmt.Errorf("heartbeat: boot number: %w", err)
		}
	}
	lastBoot = boot
	return boot, nil
}
