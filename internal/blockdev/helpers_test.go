package blockdev

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTools skips t unless every tool is on PATH (or in /sbin, where
// Debian keeps mkfs and blkid for non-root users).
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			t.Skipf("%s not found (install util-linux, e2fsprogs, dosfstools, btrfs-progs, gdisk, fdisk: `make deps`)", tool)
		}
	}
}

func lookTool(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, tool)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", tool)
}

// run runs a tool and returns its stdout, failing t with argv and output.
func run(t testing.TB, argv ...string) string {
	t.Helper()
	path, err := lookTool(argv[0])
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, out, stderr.String())
	}
	return string(out)
}

// image makes a sparse file of sizeMB under dir and runs mkfs (argv with
// the file appended) on it.
func image(t testing.TB, dir, name string, sizeMB int, mkfs ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(mkfs) > 0 {
		run(t, append(mkfs, path)...)
	}
	return path
}

// blkid returns `blkid -p -o export` for path as a map; empty when blkid
// finds nothing (exit status 2).
func blkid(t testing.TB, path string, extra ...string) map[string]string {
	t.Helper()
	bin, err := lookTool("blkid")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-p", "-o", "export"}, extra...)
	out, err := exec.Command(bin, append(args, path)...).Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 {
		return map[string]string{}
	} else if err != nil {
		t.Fatalf("blkid -p %s: %v", path, err)
	}
	// Export format escapes spaces and non-ASCII bytes; take the tag
	// names from it and each raw value from `-o value -s TAG`.
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, _, ok := strings.Cut(sc.Text(), "=")
		if !ok || k == "DEVNAME" {
			continue
		}
		v, err := exec.Command(bin, append(append([]string{"-p", "-o", "value", "-s", k}, extra...), path)...).Output()
		if err != nil {
			t.Fatalf("blkid -p -o value -s %s %s: %v", k, path, err)
		}
		m[k] = strings.TrimSuffix(string(v), "\n")
	}
	return m
}

// sfdiskTable is what `sfdisk -J` says about a partition table.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskJSON(t testing.TB, path string) sfdiskTable {
	t.Helper()
	var st sfdiskTable
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "-J", path)), &st); err != nil {
		t.Fatalf("sfdisk -J %s: %v", path, err)
	}
	return st
}

// extract copies sectors [start, start+n) of src into a new file dst: the
// content a partition's device node would show.
func extract(t testing.TB, src, dst string, start, n uint64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, int64(start)*512, int64(n)*512)); err != nil {
		t.Fatal(err)
	}
}

// fakeSys is a /sys/class/block tree laid out like the kernel's: class
// entries are symlinks into devices/, and a partition's directory sits
// inside its disk's.
type fakeSys struct {
	t     testing.TB
	Root  string // .../sys
	Class string // .../sys/class/block
	Dev   string // .../dev
}

func newFakeSys(t testing.TB) *fakeSys {
	root := t.TempDir()
	f := &fakeSys{t: t, Root: filepath.Join(root, "sys"), Class: filepath.Join(root, "sys/class/block"), Dev: filepath.Join(root, "dev")}
	for _, d := range []string{f.Class, f.Dev, filepath.Join(f.Root, "devices/virtual/block")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// add creates the sysfs entry for name (a partition when parent != "")
// with the given size in bytes and an optional device node file.
func (f *fakeSys) add(name, parent string, major, minor uint32, partn int, size int64, node string) {
	f.t.Helper()
	dir := filepath.Join(f.Root, "devices/virtual/block", name)
	devtype := "disk"
	if parent != "" {
		dir = filepath.Join(f.Root, "devices/virtual/block", parent, name)
		devtype = "partition"
	}
	files := map[string]string{
		"dev":       fmt.Sprintf("%d:%d\n", major, minor),
		"size":      fmt.Sprintf("%d\n", size/512),
		"ro":        "0\n",
		"removable": "0\n",
		"uevent":    fmt.Sprintf("MAJOR=%d\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=%s\n", major, minor, name, devtype),
	}
	if parent != "" {
		files["partition"] = fmt.Sprintf("%d\n", partn)
		files["uevent"] += fmt.Sprintf("PARTN=%d\n", partn)
		delete(files, "removable")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	rel, err := filepath.Rel(f.Class, dir)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(f.Class, name)); err != nil {
		f.t.Fatal(err)
	}
	if node != "" {
		if err := os.Rename(node, filepath.Join(f.Dev, name)); err != nil {
			f.t.Fatal(err)
		}
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
