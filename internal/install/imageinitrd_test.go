package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/initramfs"
)

// generatorInitrd is an initramfs laid out as a generator writes one: an
// uncompressed early-microcode archive padded to 512 bytes, then the main
// archive compressed with zstd, holding paths.
func generatorInitrd(t *testing.T, paths ...string) []byte {
	t.Helper()
	archive := func(compression string, paths ...string) []byte {
		a := initramfs.NewArchive()
		for _, p := range paths {
			if err := a.Add(initramfs.Entry{Path: p, Mode: 0o755, Data: []byte("#!/bin/sh\n# " + p + "\n")}); err != nil {
				t.Fatal(err)
			}
		}
		b, err := a.Bytes(compression, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	early := archive(initramfs.None, "kernel/x86/microcode/GenuineIntel.bin")
	early = append(early, make([]byte, (512-len(early)%512)%512)...)
	return append(early, archive(initramfs.Zstd, paths...)...)
}

var itoolsHook = []string{
	"init",
	"usr/lib/dockroot/dockroot-init",
	"scripts/local-premount/dockroot",
	"scripts/local-premount/ORDER",
	"usr/lib/modules/" + kver + "/kernel/fs/btrfs/btrfs.ko",
}

func installImageInitrd(t *testing.T, bootDir, root string) (*Result, error) {
	t.Helper()
	in := &installer{ctx: context.Background(), opts: Options{Ref: "desk:1", BootDir: bootDir, DockerRoot: "/unused", Initramfs: InitramfsImage,
		Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }}}
	in.root = root
	in.res.Ref, in.res.ImageID = "desk:1", id1
	defer in.cleanup()
	if err := in.checkOptions(); err != nil {
		return nil, err
	}
	if err := in.fromRoot(); err != nil {
		return nil, err
	}
	return &in.res, nil
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImageInitramfs: --initramfs image copies the generator's initramfs,
// found where each generator writes it, byte for byte, once it is seen
// to hold dockroot's hook; no dockroot-init is needed on the host.
func TestImageInitramfs(t *testing.T) {
	for _, c := range []struct {
		name, rel, path string // path: as reported, "" for "/"+rel
		setup           func(root string)
	}{
		{"initramfs-tools", "boot/initrd.img-" + kver, "", nil},
		{"dracut", "boot/initramfs-" + kver + ".img", "", nil},
		// lib is a link to usr/lib in the image: the first name is kept.
		{"kernel-install", "usr/lib/modules/" + kver + "/initramfs.img", "/lib/modules/" + kver + "/initramfs.img", nil},
		{"mkinitcpio", "boot/initramfs-linux-lts.img", "", func(root string) {
			writeFile(t, filepath.Join(root, "usr/lib/modules", kver, "pkgbase"), []byte("linux-lts\n"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, boot := imageRoot(t, "kernel"), t.TempDir()
			if c.setup != nil {
				c.setup(root)
			}
			data := generatorInitrd(t, itoolsHook...)
			writeFile(t, filepath.Join(root, c.rel), data)
			res, err := installImageInitrd(t, boot, root)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(boot, "desk-1", bootmenu.InitrdFile))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("installed initramfs (%d bytes, %v) is not the image's (%d bytes)", len(got), err, len(data))
			}
			if c.path == "" {
				c.path = "/" + c.rel
			}
			ii := res.ImageInitrd
			if ii == nil || ii.Path != c.path || !slices.Equal(ii.Streams, []string{"none", "zstd"}) ||
				!slices.Equal(ii.Hook, []string{"/usr/lib/dockroot/dockroot-init", "/scripts/local-premount/dockroot"}) || res.Initramfs != nil {
				t.Errorf("result %+v, initramfs build %v", ii, res.Initramfs)
			}
			// Again: the same file is up to date.
			if res, err := installImageInitrd(t, boot, root); err != nil || !res.UpToDate {
				t.Errorf("second install: up to date %v, %v", res != nil && res.UpToDate, err)
			}
		})
	}
}

// TestImageInitramfsRefused: each reason the image's initramfs cannot be
// used is an ImageInitramfsError naming the file, and nothing is installed.
func TestImageInitramfsRefused(t *testing.T) {
	rel := "boot/initrd.img-" + kver
	for _, c := range []struct {
		name string
		data []byte // nil: no initramfs at all
		want string
	}{
		{"none", nil, "the image has no initramfs for kernel " + kver + " (looked for /boot/initrd.img-" + kver + ", /boot/initramfs-" + kver + ".img"},
		{"without the hook", generatorInitrd(t, "init", "scripts/local-premount/ORDER", "usr/lib/modules/"+kver+"/modules.dep"), "/" + rel + " (kernel " + kver + ") does not hold dockroot's hook: no dockroot-init"},
		{"binary only", generatorInitrd(t, "init", "usr/lib/dockroot/dockroot-init"), "holds /usr/lib/dockroot/dockroot-init but no hook script or unit that runs it"},
		{"script only", generatorInitrd(t, "init", "scripts/local-premount/dockroot", "etc/dockroot.json"), "holds /scripts/local-premount/dockroot but no dockroot-init binary"},
		{"another kernel", generatorInitrd(t, append(slices.Clone(itoolsHook[:3]), "usr/lib/modules/5.10.0-9-amd64/modules.dep")...), "holds the modules of kernel 5.10.0-9-amd64, not of " + kver},
		{"not an initramfs", []byte("#!/bin/sh\n"), "cannot be read as an initramfs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, boot := imageRoot(t, "kernel"), t.TempDir()
			if c.data != nil {
				writeFile(t, filepath.Join(root, rel), c.data)
			}
			_, err := installImageInitrd(t, boot, root)
			var ie *ImageInitramfsError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want an ImageInitramfsError with %q", err, c.want)
			}
			if (c.data == nil) != (ie.File == "") {
				t.Errorf("File %q for %s", ie.File, c.name)
			}
			if ents, _ := os.ReadDir(boot); len(ents) != 0 {
				t.Errorf("boot directory after a refused install: %v", ents)
			}
		})
	}
}
