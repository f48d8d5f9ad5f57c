// Command bench measures dockroot's boot path against the ways it
// replaces and writes docs/BENCHMARKS.md with plots in docs/bench/ (issue
// 6). `make bench` runs it as root:
//
//	go run ./tests/bench -out docs           # the full run the docs report
//	go run ./tests/bench -quick -out /tmp/b  # smaller sizes
//	go run ./tests/bench -smoke              # seconds: checks the harness works
//	go run ./tests/bench -only stores -out docs  # section 7c alone, the others kept
//
// It makes a loop btrfs and a private dockerd (sections 1–4, 7a and 7b),
// another with dockerd, podman and Docker 29's containerd store (section
// 7c), then a boot disk and the initramfs images booted in QEMU (sections
// 5 and 6),
// and releases every loop device, mount and process it made on any exit.
// Timings are reported, never asserted.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	quick := flag.Bool("quick", false, "smaller images and file counts (minutes)")
	smoke := flag.Bool("smoke", false, "tiny sizes, one run each, no QEMU: checks the harness works (seconds)")
	out := flag.String("out", "", "docs `DIR` to write BENCHMARKS.md and bench/*.png into (default: none for -smoke, else docs)")
	cache := flag.String("cache", defaultCacheDir(), "scratch `DIR` for the loop btrfs (≤ ~6 GB) and the boot disk")
	noVM := flag.Bool("no-vm", false, "skip the QEMU sections (5 and 6)")
	vmOnlyFlag := flag.Bool("vm-only", false, "run only the QEMU sections (5 and 6): -only "+vmOnly)
	only := flag.String("only", "", "run only these comma-separated `SECTIONS` ("+sectionKeys()+") and keep the others from -out's bench/results.json")
	report := flag.String("report", "", "measure nothing: re-render the docs in -out from this results.json `FILE`")
	flag.Parse()

	if *report != "" {
		if err := rerender(*report, *out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}

	mode := "full"
	switch {
	case *smoke:
		mode = "smoke"
	case *quick:
		mode = "quick"
	}
	opts, err := modeOptions(mode)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	opts.Out, opts.CacheDir = *out, *cache
	if opts.Out == "" && mode != "smoke" {
		opts.Out = "docs"
	}
	if *noVM {
		opts.VM = false
	}
	if *vmOnlyFlag {
		*only = strings.TrimPrefix(*only+","+vmOnly, ",")
	}
	if *only != "" {
		if opts.Only, err = parseOnly(*only); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		opts.VM = opts.VM || opts.Only["initramfs"] || opts.Only["boot"]
	}
	start := time.Now()
	opts.Log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
	}

	// Ctrl-C or SIGTERM: release the loop device, mounts and dockerd
	// before exiting, as a normal return would.
	cl := &cleanups{}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		opts.Log("%v: cleaning up", s)
		if err := cl.run(opts.Log); err != nil {
			opts.Log("cleanup: %v", err)
		}
		os.Exit(130)
	}()

	if _, err := Run(opts, cl); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sectionKeys lists -only's section keys with their numbers.
func sectionKeys() string {
	var l []string
	for _, s := range sections {
		l = append(l, s.key+" ("+s.label+")")
	}
	return strings.Join(l, ", ")
}

// rerender writes the report and plots for a results.json from an
// earlier run, e.g. after changing how they are drawn.
func rerender(file, out string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if out == "" {
		out = "docs"
	}
	work, err := os.MkdirTemp("", "dockroot-bench-report-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	return writeOutputs(&res, out, work, func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
}
