package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"tandem/internal/blockreg"
)

// RegisterClient is the block-register workload (`tandem
// bench-register-client`) running on the client host against a volume
// group's export, its history in a file of the work directory that it
// reads as it grows.
type RegisterClient struct {
	bed  *Bed
	args []string // what every run of the client shares
	cmd  *os.Process
	Path string // the history, JSON lines

	mu   sync.Mutex
	off  int64
	ops  []blockreg.Op
	acks int
}

// StartRegisterClient starts the workload on nbd://addr/export with seed
// and stamp (written into every write's number); extra are more flags
// (--clients 2).
func (b *Bed) StartRegisterClient(addr, export string, seed uint64, stamp uint16, extra ...string) (*RegisterClient, error) {
	rc := &RegisterClient{bed: b, Path: filepath.Join(b.Dir, fmt.Sprintf("registers-%d.jsonl", seed))}
	rc.args = append([]string{"bench-register-client", "--addr", addr, "--export", export, "--out", rc.Path}, extra...)
	args := append(slices.Clip(rc.args), "--seed", strconv.FormatUint(seed, 10), "--stamp", strconv.Itoa(int(stamp)))
	cmd := b.Command("client", b.Binary, args...)
	errLog, err := os.Create(rc.Path + ".err")
	if err != nil {
		return nil, err
	}
	defer errLog.Close()
	cmd.Stdout, cmd.Stderr = errLog, errLog
	if err := b.start(cmd); err != nil {
		return nil, fmt.Errorf("testbed: start the register client: %w", err)
	}
	rc.cmd = cmd.Process
	return rc, nil
}

// Stop ends the workload (SIGTERM: operations out finish or time out
// first) and waits until the client has exited.
func (rc *RegisterClient) Stop(timeout time.Duration) error {
	rc.cmd.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(timeout); pidAlive(rc.cmd.Pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			rc.cmd.Kill()
			return fmt.Errorf("testbed: the register client still ran %v after SIGTERM", timeout)
		}
	}
	return nil
}

// Final reads every register once through the export, appending to the
// history; it fails after timeout.
func (rc *RegisterClient) Final(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	name, args := rc.bed.Binary, append(slices.Clip(rc.args), "--final")
	if !rc.bed.opts.NormalPriority {
		name, args = "chrt", append([]string{"-r", rtPriority, name}, args...)
	}
	cmd := rc.bed.Host("client").NS.Command(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: final read of the registers: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Ops returns the history recorded so far.
func (rc *RegisterClient) Ops() ([]blockreg.Op, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := rc.refresh(); err != nil {
		return nil, err
	}
	return append([]blockreg.Op(nil), rc.ops...), nil
}

// refresh reads what the client appended since the last call (complete
// lines only); rc.mu is held.
func (rc *RegisterClient) refresh() error {
	f, err := os.Open(rc.Path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(rc.off, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	ops, err := blockreg.Parse(bufio.NewReader(bytes.NewReader(data[:end])))
	if err != nil {
		return err
	}
	rc.off += int64(end)
	rc.ops = append(rc.ops, ops...)
	return nil
}

// WaitAcks waits until n writes called after since have been
// acknowledged: the volume serves again.
func (rc *RegisterClient) WaitAcks(ctx context.Context, since time.Time, n int, timeout time.Duration) error {
	got := 0
	err := waitFor(ctx, timeout, 20*time.Millisecond, func() (bool, error) {
		ops, err := rc.Ops()
		if err != nil {
			return false, err
		}
		got = 0
		for _, op := range ops {
			if op.Write && op.Result == blockreg.OK && op.Call >= since.UnixNano() {
				got++
			}
		}
		return got >= n, nil
	}, "%d writes acknowledged after %s", n, since.Format("15:04:05.000"))
	if err != nil {
		return fmt.Errorf("%w (%d were)", err, got)
	}
	return nil
}
