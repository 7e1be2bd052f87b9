// Package pdf prints an HTML page to PDF with headless Chromium (Debian's
// chromium package): the adapter behind `tandem report --format pdf`. It
// imports nothing of ours.
package pdf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Browsers are the Chromium binaries tried, in order.
var Browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// ErrNoBrowser: no headless Chromium was found.
var ErrNoBrowser = errors.New("pdf: no Chromium found (tried " + strings.Join(Browsers, ", ") +
	"): install it (Debian: apt-get install chromium), or make the report with --format html and print that")

// FindBrowser returns the path of the first Chromium on PATH.
func FindBrowser() (string, error) {
	for _, b := range Browsers {
		if p, err := exec.LookPath(b); err == nil {
			return p, nil
		}
	}
	return "", ErrNoBrowser
}

// Print renders html (a self-contained page) to a PDF file at out with
// browser (FindBrowser's answer), within timeout.
func Print(ctx context.Context, browser string, html []byte, out string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "tandem-report-")
	if err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	defer os.RemoveAll(dir)
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, html, 0o600); err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	tmp := filepath.Join(dir, "report.pdf")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-sync", "--no-pdf-header-footer",
		"--user-data-dir=" + filepath.Join(dir, "profile"), "--print-to-pdf=" + tmp, "file://" + page}
	if os.Geteuid() == 0 {
		// Chromium refuses to run its sandbox as root; the page is ours,
		// static and without scripts.
		args = append([]string{"--no-sandbox"}, args...)
	}
	cmd := exec.CommandContext(ctx, browser, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("pdf: %s did not finish within %s", browser, timeout)
	}
	info, statErr := os.Stat(tmp)
	if err != nil || statErr != nil || info.Size() == 0 {
		return fmt.Errorf("pdf: %s --print-to-pdf made no PDF (%v): %s", browser, err, lastLines(stderr.String(), 5))
	}
	data, err := os.ReadFile(tmp)
	if err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	if !bytes.HasPrefix(data, []byte("%PDF-")) {
		return fmt.Errorf("pdf: %s wrote something that is not a PDF", browser)
	}
	if err := os.WriteFile(abs, data, 0o640); err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
