package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/testenv"
)

//go:embed plot.gp
var plotScript []byte

// Machine describes where the figures were taken.
type Machine struct {
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	MemoryMB int               `json:"memory_mb"`
	Kernel   string            `json:"kernel"`
	OS       string            `json:"os"`
	Tools    map[string]string `json:"tools"`
	// LoadAvg is /proc/loadavg's 1-minute figure when the run started and
	// when it ended: other jobs on the machine make the timings noisier.
	LoadAvg [2]string `json:"load_average_1min_start_end"`
}

// loadAvg is the 1-minute load average, "" if unknown.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// describeMachine reads /proc/cpuinfo, /proc/meminfo, uname and the tool
// versions.
func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Tools: map[string]string{"go": runtime.Version()}, LoadAvg: [2]string{loadAvg()}}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	if out, err := testenv.Output("uname", "-srvm"); err == nil {
		m.Kernel = strings.TrimSpace(out)
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	for name, argv := range map[string][]string{
		"dockerd":     {"dockerd", "--version"},
		"btrfs-progs": {"btrfs", "--version"},
		"coreutils":   {"cp", "--version"},
		"bash":        {"bash", "--version"},
		"jq":          {"jq", "--version"},
		"qemu":        {"qemu-system-x86_64", "--version"},
		"busybox":     {"busybox", "--help"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err == nil {
			m.Tools[name] = firstLine(strings.TrimSpace(string(out)))
		}
	}
	return m
}

// writeOutputs writes out/BENCHMARKS.md, out/bench/results.json and the
// plots (when gnuplot is installed; without it the report says so).
func writeOutputs(res *Results, out, work string, logf func(string, ...any)) error {
	benchDir := filepath.Join(out, "bench")
	if err := os.MkdirAll(benchDir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(benchDir, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	plots, perr := drawPlots(res, filepath.Join(work, "plotdata"), benchDir)
	if perr != nil {
		logf("plots: %v", perr)
	}
	doc := renderReport(res, plots, perr)
	if err := os.WriteFile(filepath.Join(out, "BENCHMARKS.md"), []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote %s, %s and %d plot(s)", filepath.Join(out, "BENCHMARKS.md"), filepath.Join(benchDir, "results.json"), len(plots))
	return perr
}

// plotData returns the gnuplot data files for res: name -> content.
func plotData(res *Results) map[string]string {
	files := map[string]string{}
	var b strings.Builder
	for _, h := range res.Hook {
		mb := float64(h.Image.Bytes) / (1 << 20)
		fmt.Fprintf(&b, "%g %g %g %g %g %g %g %q %g %g\n", mb, h.Dockroot.Median, h.Dockroot.Min, h.Dockroot.Max,
			h.Shell.Median, h.Shell.Min, h.Shell.Max, h.Image.Label, h.Deferred.Median, h.Cold.Median)
	}
	files["hook.dat"] = b.String()
	b.Reset()
	byFiles := map[int][2]DeleteRow{}
	for _, d := range res.Delete {
		pair := byFiles[d.Files]
		if d.Nested > 0 {
			pair[1] = d
		} else {
			pair[0] = d
		}
		byFiles[d.Files] = pair
	}
	var counts []int
	for n := range byFiles {
		counts = append(counts, n)
	}
	sort.Ints(counts)
	for _, n := range counts {
		p := byFiles[n]
		fmt.Fprintf(&b, "%d %s %s %s %s %s\n", n, gp(p[0].Dockroot.Median), gp(p[0].Progs.Median), gp(p[0].Walk.Median),
			gp(p[1].Dockroot.Median), gp(p[1].Walk.Median))
	}
	files["delete.dat"] = b.String()
	b.Reset()
	if r := res.Boot; r.contender(cDockroot) != nil {
		for _, c := range r.Contenders {
			fmt.Fprintf(&b, "%q %s %s %g %g %g\n", strings.ReplaceAll(strings.ReplaceAll(c.Label, "`", ""), "*", ""),
				gp(c.ToDisk.Median), gp(c.ToMount.Median), c.Phase.Median, c.Phase.Min, c.Phase.Max)
		}
		files["boot.dat"] = b.String()
		b.Reset()
	}
	for _, c := range res.Copy {
		fmt.Fprintf(&b, "%q %g %g\n", c.Tree+", "+strings.Fields(c.Source)[0], c.Dockroot.Median, c.CpA.Median)
	}
	files["copy.dat"] = b.String()
	b.Reset()
	for _, r := range res.TreeRoot {
		fmt.Fprintf(&b, "%d %g %g %g %d %q\n", r.Pointers, r.Snapshot.Median, r.Snapshot.Min, r.Snapshot.Max, r.Level,
			fmt.Sprintf("%s files", count(r.Files)))
	}
	files["root.dat"] = b.String()
	return files
}

// gp is v for gnuplot, "?" (missing) when not measured.
func gp(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "?"
	}
	return fmt.Sprintf("%g", v)
}

// hookClaim is the hook plot's second title line, from the figures.
func hookClaim(res *Results) string {
	if len(res.Hook) < 2 {
		return ""
	}
	first, last := res.Hook[0], res.Hook[len(res.Hook)-1]
	lo, hi := math.Inf(1), 0.0
	for _, h := range res.Hook {
		lo, hi = math.Min(lo, h.Speedup), math.Max(hi, h.Speedup)
	}
	return fmt.Sprintf("dockroot at %s / at %s = %s (first boot after a change: %s); the shell way is %s–%s slower", last.Image.Label, first.Image.Label,
		fmtRatio(ratio(last.Dockroot.Median, first.Dockroot.Median)), fmtRatio(ratio(last.Cold.Median, first.Cold.Median)), fmtRatio(lo), fmtRatio(hi))
}

// plotNames are the PNGs plot.gp draws, in report order.
var plotNames = []string{"hook-vs-image-size.png", "snapshot-vs-tree-root.png", "delete-vs-files.png", "boot-to-init.png", "toplayer-vs-cp.png"}

// drawPlots writes the data files and runs plot.gp; it returns the PNG
// names made, relative to outDir.
func drawPlots(res *Results, dataDir, outDir string) ([]string, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range plotData(res) {
		if err := os.WriteFile(filepath.Join(dataDir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	for _, name := range plotNames {
		if err := os.Remove(filepath.Join(outDir, name)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	script := filepath.Join(dataDir, "plot.gp")
	if err := os.WriteFile(script, plotScript, 0o644); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return nil, fmt.Errorf("gnuplot is not installed, so there are no plots (apt-get install gnuplot-nox)")
	}
	vars := fmt.Sprintf("data='%s'; out='%s'; hookclaim='%s'", dataDir, outDir, strings.ReplaceAll(hookClaim(res), "'", ""))
	if _, err := testenv.Output("gnuplot", "-e", vars, script); err != nil {
		return nil, err
	}
	var made []string
	for _, name := range plotNames {
		if fi, err := os.Stat(filepath.Join(outDir, name)); err == nil && fi.Size() > 0 {
			made = append(made, name)
		}
	}
	return made, nil
}
