// Package web holds the landing page's templates and static assets,
// embedded in the binary: html/template pages that read without
// JavaScript, and one small script (static/live.js, no build step) that
// follows the builds in progress through /events.
package web

import "embed"

// Templates are the page templates (templates/*.html).
//
//go:embed templates/*.html
var Templates embed.FS

// Static are the files served under /static/.
//
//go:embed static
var Static embed.FS
