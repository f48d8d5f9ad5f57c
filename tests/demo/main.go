// Command demo is `make demo`: it builds dockroot, builds a small image
// with a private dockerd onto a loop-mounted btrfs disk image, makes the
// initramfs for Debian's kernel, and boots it all in QEMU with the console
// on this terminal. The image's init greets, shows /run/dockroot/boot.json
// and powers off. Run it as root from the repository (make demo).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

// helloInit is the demo image's /sbin/init.
const helloInit = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
echo
echo "  +--------------------------------------------------------------+"
echo "  |  Hello! This is a Docker image, booted as this machine's /.  |"
echo "  +--------------------------------------------------------------+"
echo
echo "  image:     $(cat /etc/image-name)    (init is PID $$)"
echo "  hostname:  $(cat /etc/hostname)    (from the top layer, boot_docker/etc/hostname)"
echo "  root:      $(awk '$2 == "/" {print $1, $3, $4}' /proc/mounts)"
echo
echo "  /run/dockroot/boot.json, what dockroot did to get here:"
sed 's/^/    /' /run/dockroot/boot.json
echo
if [ -e /left-by-last-boot ]; then
  echo "  STALE: / still has what the last boot wrote ($(cat /left-by-last-boot))"
else
  echo "  / is fresh: nothing an earlier boot wrote into it is here."
fi
date > /left-by-last-boot
echo "  Anything written to / now is gone at the next boot: dockroot makes a"
echo "  fresh snapshot of the image every time (the last one is kept as"
echo "  docker_rwlayer.prev.1)."
echo
echo "  Powering off. Bye!"
echo DEMO-DONE
sync
poweroff -f
`

const (
	image  = "hello:latest"
	params = "quiet root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker"
)

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root for loop devices, btrfs and dockerd: run `sudo make demo`")
	}
	work, err := os.MkdirTemp("", "dockroot-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step := func(what string) func() {
		fmt.Printf("==> %s\n", what)
		start := time.Now()
		return func() { fmt.Printf("    done in %v\n", time.Since(start).Round(100*time.Millisecond)) }
	}

	done := step("building dockroot and dockroot-init")
	prod, err := vmkit.BuildProduct(filepath.Join(work, "bin"))
	if err != nil {
		return err
	}
	done()

	done = step("fetching Debian's kernel package (cached in $DOCKROOT_CACHE)")
	cache, err := vmkit.CacheDir()
	if err != nil {
		return err
	}
	kernel, err := vmkit.FetchKernel(cache)
	if err != nil {
		return err
	}
	fmt.Printf("    kernel %s\n", kernel.Version)
	done()

	if err := ctx.Err(); err != nil {
		return err
	}
	done = step("building " + image + " with a private dockerd on a loop btrfs labelled \"linux\"")
	disk := filepath.Join(work, "disk.img")
	err = vmkit.BuildDisk(disk, vmkit.DiskSpec{
		SizeMB:     1024,
		Label:      "linux",
		DockerPath: "docker",
		Images: func(d *testenv.Dockerd) error {
			if err := vmkit.ImportBusybox(d, "demo/busybox:base"); err != nil {
				return err
			}
			return vmkit.Build(d, image, []string{"FROM demo/busybox:base", "COPY rootfs/ /"}, []vmkit.File{
				{Path: "rootfs/sbin/init", Mode: 0o755, Data: helloInit},
				{Path: "rootfs/etc/image-name", Data: image + "\n"},
			})
		},
		Files: []vmkit.File{{Path: "boot_docker/etc/hostname", Data: "demo-machine\n"}},
	})
	if err != nil {
		return err
	}
	done()

	done = step("building the initramfs with `dockroot initramfs`")
	conf := filepath.Join(work, "dockroot.json")
	if err := os.WriteFile(conf, []byte(`{"docker_image": "`+image+`"}`+"\n"), 0o644); err != nil {
		return err
	}
	initrd := filepath.Join(work, "initramfs.img")
	msg, err := prod.Initramfs(kernel, initrd, "--config", conf)
	if err != nil {
		return err
	}
	fmt.Print(indent(msg))
	done()

	// Two power-ons: the second finds a fresh layer again, made from the
	// prepared base the first one kept (the top layer is not copied).
	for _, title := range []string{
		"booting in QEMU (TCG, no KVM): kernel command line\n    " + params,
		"powering on again: a fresh layer again, this time made from the prepared base (image + top layer) the first boot kept",
	} {
		if err := ctx.Err(); err != nil {
			return err
		}
		done = step(title)
		if err := bootOnce(ctx, kernel.Vmlinuz, initrd, disk); err != nil {
			return err
		}
		fmt.Println()
		done()
	}
	fmt.Println("==> the image powered off; everything the demo made is removed.")
	return nil
}

// bootOnce boots the demo disk until its init powers off.
func bootOnce(ctx context.Context, vmlinuz, initrd, disk string) error {
	vm, err := vmkit.Start(vmkit.Options{
		Kernel: vmlinuz,
		Initrd: initrd,
		Append: params,
		Drives: []vmkit.Drive{{File: disk}},
		Live:   os.Stdout,
	})
	if err != nil {
		return err
	}
	defer vm.Kill()
	waited := make(chan error, 1)
	go func() {
		if err := vm.Expect("DEMO-DONE", 180*time.Second); err != nil {
			waited <- err
			return
		}
		waited <- vm.WaitExit(60 * time.Second)
	}()
	select {
	case err = <-waited:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("the demo boot failed: %w", err)
	}
	if strings.Contains(vm.Console.String(), "STALE:") {
		return errors.New("the image's / still held what the previous boot wrote: the rw layer was not fresh")
	}
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}
