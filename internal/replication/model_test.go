package replication

import (
	"flag"
	"slices"
	"testing"
)

var (
	simSeeds     = flag.Int("replication.seeds", 0, "random seeds per model test (0: the quick default)")
	simSeed      = flag.Uint64("replication.seed", 0, "run only this seed")
	simFullTrace = flag.Bool("replication.trace", false, "print a failing run's whole trace")
)

// seedRange is the seeds a model test runs.
func seedRange(quick int) (first, last uint64) {
	if *simSeed != 0 {
		return *simSeed, *simSeed
	}
	return 1, uint64(seeds(quick))
}

func seeds(quick int) int {
	if *simSeeds > 0 {
		return *simSeeds
	}
	if testing.Short() {
		return quick / 10
	}
	return quick
}

// TestModelSync: random interleavings of client writes and flushes, frame
// deliveries, local completions, link cuts, crashes, restarts,
// promotions (every third seed also while the old primary runs on, cut
// off: split brains), verifies and rate changes in sync mode; at every promotion
// the new primary holds every acknowledged write (S3); no two primaries
// write at one epoch; after healing the replicas are equal.
func TestModelSync(t *testing.T) {
	for seed, last := seedRange(1000); seed <= last; seed++ {
		s := newSim(t, seed, Sync)
		s.rogue = seed%3 == 0
		s.run(400)
	}
	logStats(t)
}

func logStats(t *testing.T) {
	var keys []string
	for k := range simStats {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("%-40s %d", k, simStats[k])
	}
	clear(simStats)
}

// TestModelAsync: the same interleavings in async mode, with throttling or
// going ahead past max_lag and each split-brain policy; promotions of a
// cut-off primary's peer make split brains, resolved by the policy or by
// hand; after healing the replicas are equal.
func TestModelAsync(t *testing.T) {
	for seed, last := seedRange(1000); seed <= last; seed++ {
		s := newSim(t, seed, Async)
		s.rogue = seed%2 == 0
		s.cfg.OnLag = LagPolicy(seed / 2 % 2)
		s.cfg.SplitBrain = SplitBrainPolicy(seed / 4 % 4)
		s.run(400)
	}
	logStats(t)
}
