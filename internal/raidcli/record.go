package raidcli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem/internal/durable"
)

// record is what the state dir remembers about an array.
type record struct {
	Name    string    `json:"name"`
	UUID    string    `json:"uuid"`
	Level   string    `json:"level"`
	Members []string  `json:"members"` // every path seen in the array, active and spare
	Created time.Time `json:"created"`
}

func raidDir(stateDir string) string { return filepath.Join(stateDir, "raid") }

func recordPath(stateDir, name string) string {
	return filepath.Join(raidDir(stateDir), name+".json")
}

func socketPath(stateDir, name string) string {
	return filepath.Join(raidDir(stateDir), name+".sock")
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || len(name) > 32 {
		return fmt.Errorf("raid: invalid array name %q (1-32 bytes, no '/')", name)
	}
	return nil
}

func loadRecord(stateDir, name string) (*record, error) {
	b, err := os.ReadFile(recordPath(stateDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("raid: no array %q recorded in %s", name, raidDir(stateDir))
	}
	if err != nil {
		return nil, fmt.Errorf("raid: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("raid: %s: %w", recordPath(stateDir, name), err)
	}
	return &r, nil
}

func saveRecord(stateDir string, r *record) error {
	if err := os.MkdirAll(raidDir(stateDir), 0o750); err != nil {
		return fmt.Errorf("raid: %w", err)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := durable.WriteFile(recordPath(stateDir, r.Name), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("raid: %w", err)
	}
	return nil
}

// addMembers records paths (keeping order, no duplicates).
func (r *record) addMembers(paths ...string) {
	for _, p := range paths {
		found := false
		for _, q := range r.Members {
			found = found || q == p
		}
		if !found {
			r.Members = append(r.Members, p)
		}
	}
}

// removeMember forgets path.
func (r *record) removeMember(path string) {
	r.Members = slices.DeleteFunc(r.Members, func(q string) bool { return q == path })
}

func listRecords(stateDir string) ([]string, error) {
	ents, err := os.ReadDir(raidDir(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raid: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}
