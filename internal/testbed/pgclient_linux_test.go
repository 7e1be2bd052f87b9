package testbed

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The bench reads the client's growing history again and again: each read
// takes only what was appended, and a line still being written waits.
func TestPGClientReadsTheHistoryIncrementally(t *testing.T) {
	p := &PGClient{Out: filepath.Join(t.TempDir(), "h.jsonl")}
	if h, err := p.History(); err != nil || len(h) != 0 {
		t.Fatalf("no file yet: %v %v", h, err)
	}
	f, err := os.Create(p.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(`{"seq":1,"at":1000000000,"server":"a"}` + "\n" + `{"at":2000000000,"err":"x"}` + "\n" + `{"seq":2,"at":3`)
	if h, _ := p.History(); len(h) != 2 || p.Commits() != 1 {
		t.Fatalf("first read: %+v, %d commits", h, p.Commits())
	}
	f.WriteString(`000000000,"server":"b"}` + "\n")
	h, _ := p.History()
	if len(h) != 3 || h[2].Seq != 2 || h[2].Server != "b" || p.Commits() != 2 {
		t.Fatalf("second read: %+v", h)
	}
	if s, _ := p.Since(time.Unix(3, 0)); len(s) != 2 || s[0].Err != "x" {
		t.Fatalf("since 3 s (and a second before): %+v", s)
	}
}
