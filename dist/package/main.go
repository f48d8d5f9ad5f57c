// Command package is `make package`: it packages the tree `make install
// DESTDIR=…` staged as a .deb, an .rpm and an Arch package (see
// internal/distpkg), versioned from `git describe`.
//
// It is a build tool run by the Makefile; the binaries never link it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/distpkg"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", "", "the staged tree (make install DESTDIR)")
	out := flag.String("out", "bin/packages", "write the packages into `DIR`")
	describe := flag.String("version", "", "git describe --tags --always --dirty (default: run it)")
	arch := flag.String("arch", runtime.GOARCH, "the GOARCH the staged binaries were built for")
	scripts := flag.String("scripts", "dist/package", "the maintainer scripts' `DIR`")
	flag.Parse()
	if *root == "" || flag.NArg() > 0 {
		return fmt.Errorf("usage: package -root DIR [-out DIR] [-version DESCRIBE] [-arch GOARCH]")
	}
	if *describe == "" {
		d, err := git("describe", "--tags", "--always", "--dirty")
		if err != nil {
			return err
		}
		*describe = d
	}
	commits, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(commits)
	if err != nil {
		return fmt.Errorf("git rev-list --count HEAD gave %q", commits)
	}
	v, err := distpkg.ParseDescribe(*describe, n)
	if err != nil {
		return err
	}
	// The commit's time, so that one commit makes the same packages.
	mtime := time.Now()
	if ct, err := git("log", "-1", "--format=%ct"); err == nil {
		if sec, err := strconv.ParseInt(ct, 10, 64); err == nil {
			mtime = time.Unix(sec, 0)
		}
	}
	pkgs, err := distpkg.Build(distpkg.Options{Root: *root, OutDir: *out, Version: v, Arch: *arch, Scripts: *scripts, MTime: mtime})
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		fi, err := os.Stat(p.File)
		if err != nil {
			return err
		}
		fmt.Printf("%-9s %s (%d KiB)\n", p.Format, p.File, fi.Size()>>10)
	}
	return nil
}

func git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}
