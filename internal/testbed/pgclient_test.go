package testbed

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPGLostFindsCommitsOutsideEveryRange(t *testing.T) {
	history := []PGRecord{{Seq: 1}, {Seq: 2}, {Err: "reset"}, {Seq: 5}, {Seq: 7}, {Seq: 9}, {Seq: 12}}
	ranges := [][2]int64{{1, 2}, {4, 5}, {8, 10}}
	if got, want := PGLost(history, ranges), []int64{7, 12}; !reflect.DeepEqual(got, want) {
		t.Fatalf("lost %v, want %v", got, want)
	}
	if got := PGLost(history, nil); len(got) != 6 {
		t.Fatalf("an empty table loses every commit, got %v", got)
	}
}

func TestPGOutageIsLastOldToFirstNew(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) int64 { return t0.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	history := []PGRecord{
		{Seq: 1, At: at(0), Server: "a"},
		{Seq: 2, At: at(10), Server: "a"},
		{At: at(15), Err: "timeout"},
		{Seq: 4, At: at(1250), Server: "b"},
		{Seq: 3, At: at(12), Server: "a"}, // out of order: a slower session
		{Seq: 5, At: at(1260), Server: "b"},
	}
	f, ok := PGOutage(history, t0.Add(11*time.Millisecond))
	if !ok || f.From != "a" || f.To != "b" || f.OutageMs != 1238 {
		t.Fatalf("got %+v %v, want a → b after 1238 ms", f, ok)
	}
	if _, ok := PGOutage(history, t0.Add(2*time.Second)); ok {
		t.Fatal("a fault after the last commit has no new server yet")
	}
	if _, ok := PGOutage(history, t0.Add(-time.Second)); ok {
		t.Fatal("a fault before any commit has no old server")
	}
}

func TestReadPGHistorySkipsATornLine(t *testing.T) {
	in := `{"seq":1,"at":5,"server":"a","client":0}` + "\n" + `{"at":6,"client":1,"err":"x"}` + "\n" + `{"seq":2,"at`
	h, err := ReadPGHistory(strings.NewReader(in))
	if err != nil || len(h) != 2 || h[0].Seq != 1 || h[1].Err != "x" {
		t.Fatalf("got %+v %v", h, err)
	}
}
