package report

import (
	"fmt"
	"html"
	"math"
	"strings"

	"github.com/nixery-go/nixery/benchmarks/sim"
)

var palette = []string{"#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b"}

// PullRatioSVG plots pull ratio (log scale) against budget, one panel per
// workload shape and one line per algorithm.
func PullRatioSVG(d *Data) string {
	return ratioSVG(d, Ratios.Ratio, "Pull bytes / ideal (log scale, lower is better)")
}

// DockerRatioSVG is [PullRatioSVG] for the Docker engine's chain rule.
func DockerRatioSVG(d *Data) string {
	return ratioSVG(d, Ratios.ChainRatio, "Docker engine (classic store) pull bytes / ideal (log scale, lower is better)")
}

func ratioSVG(d *Data, f func(Ratios) float64, title string) string {
	agg := Aggregate(d.Outcome)
	var shapes []sim.Shape
	for _, s := range sim.Shapes {
		if agg[s] != nil {
			shapes = append(shapes, s)
		}
	}
	const pw, ph, ml, mt, mb, gap = 300.0, 240.0, 55.0, 40.0, 45.0, 30.0
	legendH := 22.0 * float64(len(d.Algorithms))
	width := ml + float64(len(shapes))*(pw+gap) + 10
	height := mt + ph + mb + legendH + 10
	hi := 1.0
	for _, s := range shapes {
		for _, a := range d.Algorithms {
			for _, b := range d.Budgets {
				hi = math.Max(hi, f(agg[s][a][b]))
			}
		}
	}
	top := math.Pow(10, math.Ceil(math.Log10(hi)*2)/2) // next half decade
	if top <= 1 {
		top = 2
	}
	y := func(r float64) float64 {
		r = math.Max(r, 1)
		return mt + ph - ph*math.Log10(r)/math.Log10(top)
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", ml, html.EscapeString(title))
	for si, s := range shapes {
		x0 := ml + float64(si)*(pw+gap)
		x := func(i int) float64 {
			if len(d.Budgets) == 1 {
				return x0 + pw/2
			}
			return x0 + 10 + (pw-20)*float64(i)/float64(len(d.Budgets)-1)
		}
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-weight="bold">%s</text>`+"\n", x0+pw/2, mt-8, html.EscapeString(string(s)))
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0, mt, pw, ph)
		for _, t := range ticks(top) {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y(t), x0+pw, y(t))
			if si == 0 {
				p(`<text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n", x0-5, y(t)+4, t)
			}
		}
		for i, bu := range d.Budgets {
			p(`<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x(i), mt+ph+16, bu)
		}
		p(`<text x="%.1f" y="%.1f" text-anchor="middle">budget (layers)</text>`+"\n", x0+pw/2, mt+ph+34)
		for ai, a := range d.Algorithms {
			c := palette[ai%len(palette)]
			w := 1.5
			if a == d.Ours {
				w = 3
			}
			var pts []string
			for i, bu := range d.Budgets {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(f(agg[s][a][bu]))))
			}
			p(`<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"/>`+"\n", strings.Join(pts, " "), c, w)
			for _, pt := range pts {
				xy := strings.Split(pt, ",")
				p(`<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`+"\n", xy[0], xy[1], c)
			}
		}
	}
	ly := mt + ph + mb + 5
	for ai, a := range d.Algorithms {
		c := palette[ai%len(palette)]
		yy := ly + 22*float64(ai)
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", ml, yy, ml+30, yy, c)
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", ml+38, yy+4, html.EscapeString(a))
	}
	p("</svg>\n")
	return b.String()
}

// ticks returns 1, 2, 5, 10, ... up to top.
func ticks(top float64) []float64 {
	var out []float64
	for dec := 1.0; dec <= top; dec *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if t := m * dec; t <= top {
				out = append(out, t)
			}
		}
	}
	return out
}

// ThroughputSVG draws one horizontal bar per measurement.
func ThroughputSVG(bars []Bar) string {
	const ml, bw, bh, gap, mt = 260.0, 420.0, 20.0, 8.0, 36.0
	hi := 0.0
	for _, t := range bars {
		hi = math.Max(hi, t.MBps)
	}
	if hi <= 0 {
		hi = 1
	}
	height := mt + float64(len(bars))*(bh+gap) + 20
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", ml+bw+90, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="10" y="20" font-size="14" font-weight="bold">Throughput (MB/s of uncompressed input, higher is better)</text>` + "\n")
	for i, t := range bars {
		yy := mt + float64(i)*(bh+gap)
		w := bw * math.Max(t.MBps, 0) / hi
		p(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ml-8, yy+bh-6, html.EscapeString(t.Name))
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", ml, yy, w, bh, palette[(i+1)%len(palette)])
		p(`<text x="%.1f" y="%.1f">%.1f</text>`+"\n", ml+w+6, yy+bh-6, t.MBps)
	}
	p("</svg>\n")
	return b.String()
}
