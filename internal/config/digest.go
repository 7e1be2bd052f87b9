package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// What a member running another configuration than the cluster's means.
const (
	MismatchBlock = "block" // no group moves onto it until the files agree
	MismatchWarn  = "warn"  // shown in status and the audit log only
)

// Digest fingerprints everything every member must agree on: the cluster,
// its members and their links, timing, and every group with every
// resource. What may differ between machines is left out: state_dir,
// key_file (its path; a different key cannot talk at all), api, events and
// notify.
// Two members with the same digest run the same configuration.
func (c *Config) Digest() string {
	shared := *c
	shared.StateDir, shared.KeyFile = "", ""
	shared.API, shared.Events, shared.Notify = API{}, Events{}, Notify{}
	shared.src = nil
	b, err := json.Marshal(shared) // map keys come out sorted
	if err != nil {
		panic(err) // plain data; cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
