package report

import (
	"encoding/json"
	"html/template"
	"io"
	"strings"
	"time"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes r as one self-contained HTML page: inline CSS, no
// script, no external asset, so it can be mailed, archived and printed
// (Chromium prints it to PDF) as it is.
func WriteHTML(w io.Writer, r Report) error {
	return page.Execute(w, r)
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp": func(t time.Time) string { return stamp(t) },
	"upper": strings.ToUpper,
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
  @page { size: A4; margin: 16mm 14mm; }
  body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 10pt; color: #1d232a; margin: 0 auto; max-width: 190mm; }
  h1 { font-size: 17pt; margin: 0 0 4pt; }
  h2 { font-size: 12.5pt; margin: 18pt 0 4pt; page-break-after: avoid; }
  .meta { color: #555; margin-bottom: 10pt; }
  .badge { display: inline-block; padding: 1pt 7pt; border-radius: 8pt; font-weight: bold; font-size: 8.5pt; color: #fff; vertical-align: middle; }
  .pass { background: #2e7d32; } .attention { background: #b26a00; } .fail { background: #c62828; }
  table { border-collapse: collapse; width: 100%; margin: 4pt 0 6pt; font-size: 8.5pt; }
  th, td { border: 0.5pt solid #c8ccd0; padding: 2pt 4pt; text-align: left; vertical-align: top; }
  th { background: #eef1f4; }
  tr { page-break-inside: avoid; }
  ul.findings { margin: 4pt 0; padding-left: 14pt; }
  ul.findings li { margin: 1pt 0; }
  .f-pass { color: #2e7d32; } .f-attention { color: #8a5200; } .f-fail { color: #c62828; font-weight: bold; }
  .summary { margin: 2pt 0 4pt; }
  .overview td:first-child { width: 55%; }
  .empty { border: 1pt solid #b26a00; background: #fff6e5; padding: 6pt 8pt; margin: 8pt 0; }
  .more { color: #555; font-style: italic; }
  footer { margin-top: 18pt; color: #777; font-size: 8pt; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<div class="meta">Period {{stamp .From}} to {{stamp .To}} · generated {{stamp .Generated}} · {{.EventCount}} events in the period ·
overall <span class="badge {{.Status}}">{{upper (print .Status)}}</span></div>
{{if .Empty}}<div class="empty"><b>No events in this period.</b> The audit logs read hold nothing between these dates:
the cluster did not run then, or the logs of that time are not among those read. The checks below that need no events
(configuration, encryption, retention) still apply; those that count events report none.</div>{{end}}
<table class="overview">
<tr><th>section</th><th>verdict</th></tr>
{{range .Sections}}<tr><td><a href="#{{.ID}}">{{.Title}}</a></td><td><span class="badge {{.Status}}">{{upper (print .Status)}}</span></td></tr>
{{end}}</table>
{{range .Sections}}
<h2 id="{{.ID}}">{{.Title}} <span class="badge {{.Status}}">{{upper (print .Status)}}</span></h2>
<p class="summary">{{.Summary}}</p>
{{if .Findings}}<ul class="findings">{{range .Findings}}<li class="f-{{.Status}}">{{.Text}}</li>{{end}}</ul>{{end}}
{{with .Table}}{{if .Rows}}<table>
<tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{if .More}}<p class="more">… and {{.More}} more rows (tandem events lists them all).</p>{{end}}{{end}}{{end}}
{{end}}
<footer>Made by tandem report from the hash-chained audit logs (docs/events.md). pass: meets the requirement · attention: look at it · fail: does not meet it.</footer>
</body>
</html>
`
