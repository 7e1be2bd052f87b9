package pdf

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/events"
	"tandem/internal/report"
)

// artifacts is where tests leave files for a person to look at:
// $TANDEM_ARTIFACTS, else tandem-artifacts in the temporary directory.
func artifacts(t *testing.T, name string) string {
	base := os.Getenv("TANDEM_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "tandem-artifacts")
	}
	dir := filepath.Join(base, name)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needTools(t *testing.T) string {
	t.Helper()
	browser, err := FindBrowser()
	if err != nil {
		t.Skipf("%v (CI installs chromium)", err)
	}
	if _, err := exec.LookPath("pdftoppm"); err != nil {
		t.Skip("pdftoppm not installed (Debian: poppler-utils; CI installs it)")
	}
	return browser
}

// halfYear is a busy synthetic pair's report over 180 days.
func halfYear() report.Report {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	in := report.Input{Cluster: "shop", From: now.Add(-report.RequiredRetention), To: now, Now: now, PeriodName: "180 days",
		Nodes:     []report.Member{{Name: "db1", Role: "node", Links: 2}, {Name: "db2", Role: "node", Links: 2}, {Name: "w", Role: "witness", Links: 1}},
		Groups:    []string{"shop-db"},
		Encrypted: true, KeyFile: "/etc/tandem/cluster.key", KeyCreated: now.AddDate(0, -3, 0), KeySource: "the key file's mtime",
		Retention: report.RequiredRetention, Logs: []report.Log{{Path: "/var/lib/tandem/events.jsonl", Entries: 30000, ChainOK: true}}}
	b := report.NewBuilder(in)
	report.Synthetic(7, 30000, in.From, in.To, func(e events.Event) bool { b.Add(0, e); return true })
	return b.Report()
}

func emptyQuarter() report.Report {
	from, to, _ := report.ParseQuarter("2026Q3")
	in := report.Input{Cluster: "shop", From: from, To: to, Now: to.AddDate(0, 2, 0), PeriodName: "2026Q3", Quarter: true,
		Nodes:     []report.Member{{Name: "db1", Role: "node", Links: 2}, {Name: "db2", Role: "node", Links: 1}, {Name: "w", Role: "witness", Links: 1}},
		Encrypted: true, KeyErr: "open /etc/tandem/cluster.key: no such file or directory", Retention: 30 * 24 * time.Hour,
		Logs: []report.Log{{Path: "events.jsonl", ChainOK: true}}}
	return report.NewBuilder(in).Report()
}

// The report prints to PDF in real headless Chromium, and the PDF renders
// to PNG pages (pdftoppm), which the test keeps for review.
func TestReportPrintsToPDF(t *testing.T) {
	browser := needTools(t)
	for name, rep := range map[string]report.Report{"half-year": halfYear(), "empty-quarter": emptyQuarter()} {
		t.Run(name, func(t *testing.T) {
			dir := artifacts(t, "report-pdf-"+name)
			var html bytes.Buffer
			if err := report.WriteHTML(&html, rep); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "report.html"), html.Bytes(), 0o644)
			out := filepath.Join(dir, "report.pdf")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := Print(ctx, browser, html.Bytes(), out, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command("pdftoppm", "-png", "-r", "50", out, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
				t.Fatalf("pdftoppm: %v\n%s", err, msg)
			}
			pages, _ := filepath.Glob(filepath.Join(dir, "page-*.png"))
			if len(pages) == 0 {
				t.Fatal("pdftoppm made no page")
			}
			for _, p := range pages {
				inked(t, p)
			}
			t.Logf("%d page(s) for review in %s", len(pages), dir)
			if name == "half-year" && len(pages) < 3 {
				t.Errorf("a busy half year printed on %d page(s)", len(pages))
			}
		})
	}
}

// inked fails unless some of the PNG's pixels are not white: something
// was drawn, not a blank page.
func inked(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	dark, all := 0, 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if (r+g+bl)/3 < 0xe000 {
				dark++
			}
			all++
		}
	}
	if dark*10000 < all { // under 0.01 %: an empty page
		t.Errorf("%s is (nearly) blank: %d of %d sampled pixels not white", path, dark, all)
	}
}

func TestNoBrowserIsAClearError(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := FindBrowser(); err != ErrNoBrowser {
		t.Fatalf("FindBrowser without Chromium: %v", err)
	}
}
