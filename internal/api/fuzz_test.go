package api

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tandem/internal/events"
)

// FuzzParseFilter: any query string of GET /v1/events is either refused
// with an error or gives a filter that only selects what it says (known
// kinds, a limit that is not negative, a start not after now for a
// duration), and that filter, written back as a query, reads the same.
func FuzzParseFilter(f *testing.F) {
	for _, q := range []string{
		"", "kind=takeover,node_down&since=1h&limit=20", "group=web&node=a&subject=x",
		"since=2026-01-02T03:04:05Z", "since=2026-01-02T03:04:05.123456789+02:00", "since=-1h",
		"since=9999999999h", "limit=-1", "limit=99999999999999999999", "kind=,,takeover,", "kind=bogus",
		"kind=takeover&kind=node_down", "since=%zz", "limit=1e3", "since=1h&since=2h",
	} {
		f.Add(q)
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	known := events.KnownKinds()
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http drops what does not parse
		}
		fl, err := parseFilter(q, now)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		if fl.Limit < 0 {
			t.Fatalf("%q: limit %d", raw, fl.Limit)
		}
		for _, k := range fl.Kinds {
			if !slices.Contains(known, k) {
				t.Fatalf("%q: unknown kind %q accepted", raw, k)
			}
		}
		if s := q.Get("since"); s != "" {
			if _, err := time.ParseDuration(s); err == nil && fl.Since.After(now) {
				t.Fatalf("%q: since %v is after now", raw, fl.Since)
			}
		}
		// written back, it reads the same
		back := url.Values{}
		for key, v := range map[string]string{"group": fl.Group, "node": fl.Node, "subject": fl.Subject} {
			if v != "" {
				back.Set(key, v)
			}
		}
		if len(fl.Kinds) > 0 {
			ks := make([]string, len(fl.Kinds))
			for i, k := range fl.Kinds {
				ks[i] = string(k)
			}
			back.Set("kind", strings.Join(ks, ","))
		}
		if !fl.Since.IsZero() {
			back.Set("since", fl.Since.Format(time.RFC3339Nano))
		}
		if fl.Limit != 0 {
			back.Set("limit", strconv.Itoa(fl.Limit))
		}
		again, err := parseFilter(back, now.Add(time.Hour))
		if err != nil {
			t.Fatalf("%q: its filter written back (%s) is refused: %v", raw, back.Encode(), err)
		}
		if again.Group != fl.Group || again.Node != fl.Node || again.Subject != fl.Subject || again.Limit != fl.Limit ||
			!again.Since.Equal(fl.Since) || !slices.Equal(again.Kinds, fl.Kinds) {
			t.Fatalf("%q: read %+v, written back and read again %+v", raw, fl, again)
		}
	})
}
