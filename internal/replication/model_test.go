package replication

import (
	"flag"
	"slices"
	"testing"
)

var simSeeds = flag.Int("replication.seeds", 0, "random seeds per model test (0: the quick default)")

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
// promotions, verifies and rate changes in sync mode; at every promotion
// the new primary holds every acknowledged write (S3); no two primaries
// write at one epoch; after healing the replicas are equal.
func TestModelSync(t *testing.T) {
	for seed := uint64(1); seed <= uint64(seeds(300)); seed++ {
		s := newSim(t, seed, Sync)
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
