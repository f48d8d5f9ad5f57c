package main

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/btrfs"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// imageSpec is one benchmark image: vmkit.BusyboxRootfs and its init, plus
// Files generated files of Bytes in total under usr/share/bench, imported
// as one layer, plus a second layer from a legacy-builder COPY, so that the
// image has a layer chain to resolve.
type imageSpec struct {
	Label string // "2 MB", shown in tables
	Ref   string
	Files int
	Bytes int64
	Init  string // /sbin/init; default benchInit
}

// ImageInfo describes a built image.
type ImageInfo struct {
	Label     string  `json:"label"`
	Ref       string  `json:"ref"`
	Files     int     `json:"files"`      // regular files, symlinks and directories in the image
	Bytes     int64   `json:"bytes"`      // bytes of regular-file content
	Layers    int     `json:"layers"`     // diff IDs
	Subvolume string  `json:"subvolume"`  // relative to the btrfs top level
	BuildSecs float64 `json:"build_secs"` // generate + docker import + docker build
	// The image subvolume's btrfs tree: the level of its root block (0: the
	// root is a leaf) and how many items or pointers that block holds.
	// Writing into a snapshot copies the shared blocks on the written
	// paths, and copying a block costs one reference per pointer in it.
	TreeLevel  int `json:"tree_level"`
	TreeRootN  int `json:"tree_root_items"`
	ChainDepth int `json:"-"`
}

// treeShape reads the root block header of the subvolume at abs from the
// device (after a sync, so the device is current): "node B level L items
// N ..." or "leaf B items N ...".
func treeShape(dev, top, abs string) (level, items int, err error) {
	id, err := btrfs.SubvolID(abs)
	if err != nil {
		return 0, 0, err
	}
	if _, err := testenv.Output("btrfs", "filesystem", "sync", top); err != nil {
		return 0, 0, err
	}
	// The first block dump-tree prints is the root; grep -m1 closes the
	// pipe after it, and dump-tree then stops.
	out, err := testenv.Output("sh", "-c", fmt.Sprintf("btrfs inspect-internal dump-tree -t %d %s | grep -m1 -E '^(node|leaf) '", id, dev))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(out)
	switch {
	case len(f) >= 6 && f[0] == "node" && f[2] == "level" && f[4] == "items":
		level, err = strconv.Atoi(f[3])
		if err == nil {
			items, err = strconv.Atoi(f[5])
		}
	case len(f) >= 4 && f[0] == "leaf" && f[2] == "items":
		items, err = strconv.Atoi(f[3])
	default:
		err = fmt.Errorf("unexpected dump-tree header %q", out)
	}
	return level, items, err
}

// benchInit is the images' /sbin/init: it prints the guest's uptime (the
// boot benchmark's figure) and powers off at once. `read` is a shell
// builtin, so nothing is forked before the figure is taken.
const benchInit = `#!/bin/sh
[ -e /proc/uptime ] || mount -t proc proc /proc
read up idle < /proc/uptime
echo "BENCH-INIT uptime=$up pid=$$"
n=0
while read -r line; do n=$((n + 1)); done < /proc/modules
echo "BENCH-MODULES n=$n"
poweroff -f
`

// bootMarker starts the line benchInit prints.
const bootMarker = "BENCH-INIT uptime="

// buildImage generates spec's root filesystem as a tar stream into
// `docker import`, then adds the second layer. It returns what was built.
func buildImage(d *testenv.Dockerd, spec imageSpec, workDir string) (ImageInfo, error) {
	start := time.Now()
	info := ImageInfo{Label: spec.Label, Ref: spec.Ref}
	base := spec.Ref + "-base"
	cmd := d.Command("import", "-", base)
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return info, fmt.Errorf("image %s: docker import: %w", spec.Ref, err)
	}
	var genErr error
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		info.Files, info.Bytes, genErr = writeRootfs(bw, spec)
		if genErr == nil {
			genErr = bw.Flush()
		}
		pw.CloseWithError(genErr)
	}()
	err := cmd.Wait()
	if genErr != nil {
		return info, fmt.Errorf("image %s: generate the root filesystem: %w", spec.Ref, genErr)
	}
	if err != nil {
		return info, fmt.Errorf("image %s: docker import - %s: %w: %s", spec.Ref, base, err, strings.TrimSpace(stderr.String()))
	}
	ctx := filepath.Join(workDir, "ctx-"+strings.NewReplacer("/", "_", ":", "_").Replace(spec.Ref))
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return info, err
	}
	defer os.RemoveAll(ctx)
	files := map[string]string{
		"Dockerfile":  fmt.Sprintf("FROM %s\nCOPY bench-image /etc/bench-image\nCMD [\"/sbin/init\"]\n", base),
		"bench-image": spec.Ref + "\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ctx, name), []byte(data), 0o644); err != nil {
			return info, err
		}
	}
	build := d.Command("build", "-q", "-t", spec.Ref, ".")
	build.Dir = ctx
	if out, err := build.CombinedOutput(); err != nil {
		return info, fmt.Errorf("image %s: docker build: %w\n%s", spec.Ref, err, out)
	}
	info.BuildSecs = time.Since(start).Seconds()
	return info, nil
}

// writeRootfs writes spec's root filesystem as a tar stream and returns
// the number of entries and of content bytes.
func writeRootfs(w io.Writer, spec imageSpec) (entries int, bytes int64, err error) {
	base, err := vmkit.BusyboxRootfs("bench-image")
	if err != nil {
		return 0, 0, err
	}
	init := spec.Init
	if init == "" {
		init = benchInit
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(1700000000, 0)
	add := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Uname, h.Gname = mtime, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		entries++
		if len(data) > 0 {
			bytes += int64(len(data))
			_, err := tw.Write(data)
			return err
		}
		return nil
	}
	for _, e := range base {
		if err := add(&e.Header, e.Data); err != nil {
			return entries, bytes, err
		}
	}
	reg := func(name string, mode int64, data []byte) error {
		return add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data)
	}
	for _, d := range []string{"usr/share", "usr/share/bench"} {
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, nil); err != nil {
			return entries, bytes, err
		}
	}
	if err := reg("sbin/init", 0o755, []byte(init)); err != nil {
		return entries, bytes, err
	}
	// systemd's switch-root (dracut's initramfs) refuses a root without
	// an os-release.
	if err := reg("etc/os-release", 0o644, []byte("ID=bench\nNAME=\"dockroot bench image\"\n")); err != nil {
		return entries, bytes, err
	}
	if spec.Files == 0 {
		return entries, bytes, tw.Close()
	}
	// Content is random so that no layer of the stack could make it
	// cheaper than real data (btrfs compression is off, but be sure).
	pool := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{'d', 'o', 'c', 'k', 'r', 'o', 'o', 't'})
	_, _ = rng.Read(pool)
	per := spec.Bytes / int64(spec.Files)
	if per > int64(len(pool))/2 {
		return entries, bytes, fmt.Errorf("files of %d bytes are larger than the generator's pool", per)
	}
	const perDir = 1000
	for i := 0; i < spec.Files; i++ {
		if i%perDir == 0 {
			if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("usr/share/bench/d%04d/", i/perDir), Mode: 0o755}, nil); err != nil {
				return entries, bytes, err
			}
		}
		off := (int64(i) * 40961) % (int64(len(pool)) - per)
		name := fmt.Sprintf("usr/share/bench/d%04d/f%06d", i/perDir, i)
		if err := reg(name, 0o644, pool[off:off+per]); err != nil {
			return entries, bytes, err
		}
	}
	return entries, bytes, tw.Close()
}
