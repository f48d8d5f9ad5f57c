package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Stat is a set of timed runs of one thing, in milliseconds. A figure of 0
// means "not measured" (JSON has no NaN, and no real run takes 0 ms).
type Stat struct {
	Runs   []float64 `json:"runs_ms"`
	Median float64   `json:"median_ms"`
	Min    float64   `json:"min_ms"`
	Max    float64   `json:"max_ms"`
}

// newStat summarises runs (milliseconds). An empty set has 0 figures.
func newStat(runs []float64) Stat {
	s := Stat{Runs: append([]float64(nil), runs...)}
	if len(runs) == 0 {
		return s
	}
	sorted := append([]float64(nil), runs...)
	sort.Float64s(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s
}

// ms converts a duration to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timeIt runs f and returns how long it took in milliseconds.
func timeIt(f func() error) (float64, error) {
	start := time.Now()
	err := f()
	return ms(time.Since(start)), err
}

// ratio is a/b, 0 (not measured) when either is missing.
func ratio(a, b float64) float64 {
	if a == 0 || b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}

// fmtMS formats milliseconds for a table: three significant digits.
func fmtMS(v float64) string {
	switch {
	case v == 0 || math.IsNaN(v):
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	case v >= 1:
		return fmt.Sprintf("%.2f ms", v)
	default:
		return fmt.Sprintf("%.3f ms", v)
	}
}

// fmtRatio formats a ratio as "1.03×".
func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	if v >= 10 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// fmtBytes formats a byte count in binary units.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// fmtUS formats a duration given in ms as microseconds: "5.2 µs".
func fmtUS(ms float64) string {
	if ms == 0 || math.IsNaN(ms) {
		return "—"
	}
	return fmt.Sprintf("%.1f µs", ms*1000)
}
