//go:build race

package volume

// raceEnabled: built with -race, where every byte a test copies costs
// tens of times more; the exhaustive tests sample their steps.
const raceEnabled = true
