package testbed

import (
	"reflect"
	"testing"
)

func TestScheduleIsReproducible(t *testing.T) {
	a, b := Schedule(42, 20), Schedule(42, 20)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, Schedule(43, 20)) {
		t.Fatal("different seeds gave the same schedule")
	}
}

func TestSchedulesCoverEveryActionAndStayValid(t *testing.T) {
	seen := map[Action]bool{}
	for seed := uint64(0); seed < 200; seed++ {
		steps := Schedule(seed, 5)
		for i, s := range steps {
			seen[s.Action] = true
			if s.Target == "" || s.Target == s.Peer {
				t.Fatalf("seed %d step %d: %v", seed, i, s)
			}
			if s.Hold <= 0 {
				t.Fatalf("seed %d step %d: hold %v", seed, i, s.Hold)
			}
			if s.WithPrevious && (i == 0 || instant(s.Action) || instant(steps[i-1].Action)) {
				t.Fatalf("seed %d step %d: cannot overlap: %v", seed, i, steps)
			}
		}
	}
	for _, a := range scheduleActions {
		if !seen[a.a] {
			t.Errorf("%s never drawn", a.a)
		}
	}
}

func TestStorageSchedules(t *testing.T) {
	if !reflect.DeepEqual(StorageSchedule(7, 10), StorageSchedule(7, 10)) {
		t.Fatal("same seed, different storage schedules")
	}
	seen := map[Action]bool{}
	for seed := uint64(0); seed < 300; seed++ {
		steps := StorageSchedule(seed, 4)
		for i, s := range steps {
			seen[s.Action] = true
			if s.Target == "" || s.Target == s.Peer || s.Hold <= 0 || s.Gap <= 0 {
				t.Fatalf("seed %d step %d: %v", seed, i, s)
			}
			if s.Target == RoleWitness && s.Peer == "" {
				t.Fatalf("seed %d step %d: a fault of the witness alone: %v", seed, i, s)
			}
			if s.WithPrevious && (i == 0 || !overlappable(s.Action) || !overlappable(steps[i-1].Action)) {
				t.Fatalf("seed %d step %d: cannot overlap: %v", seed, i, steps)
			}
		}
	}
	for _, a := range storageActions {
		if !seen[a.a] {
			t.Errorf("%s never drawn", a.a)
		}
	}
}
