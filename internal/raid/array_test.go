package raid

import (
	"math/rand/v2"
	"testing"
)

func TestEveryLevelReadsWhatItWrote(t *testing.T) {
	for _, lc := range levelCases() {
		t.Run(lc.name, func(t *testing.T) {
			ta := newTestArray(t, lc.co, lc.n, 0, testMemberSize)
			ta.verify("after fill")
			ta.randomWrites(rand.New(rand.NewPCG(3, 4)), 50)
			ta.verify("after random writes")
			ta.reopen(nil)
			ta.verify("after reopen")
		})
	}
}
