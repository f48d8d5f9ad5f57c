package vmkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bootArgs: QEMU's own loader, or the firmware and nothing of the kernel.
func TestBootArgs(t *testing.T) {
	dir := t.TempDir()
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	for _, f := range []string{code, vars} {
		if err := os.WriteFile(f, []byte("fd"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fw := &Firmware{Code: code, Vars: vars}
	for _, c := range []struct {
		name string
		opts Options
		want string // argv joined, or "error: <part of the message>"
	}{
		{"kernel", Options{Kernel: "vmlinuz", Initrd: "initrd", Append: "quiet"},
			"-kernel vmlinuz -initrd initrd -append " + KernelArgs + " quiet"},
		{"kernel, no append", Options{Kernel: "vmlinuz", Initrd: "initrd"},
			"-kernel vmlinuz -initrd initrd -append " + KernelArgs},
		{"firmware", Options{Firmware: fw},
			"-drive if=pflash,format=raw,unit=0,readonly=on,file=" + code + " -drive if=pflash,format=raw,unit=1,file=" + vars},
		{"arm64", Options{Arch: "arm64", Kernel: "Image", Initrd: "initrd", DTB: "virt.dtb"},
			"-kernel Image -initrd initrd -append " + KernelArgsArm64 + " -dtb virt.dtb"},
		{"a device tree on a PC", Options{Kernel: "vmlinuz", Initrd: "initrd", DTB: "virt.dtb"}, "error: only the arm64 virt board"},
		{"arm64 with firmware", Options{Arch: "arm64", Firmware: fw}, "error: boots its kernel directly"},
		{"unknown architecture", Options{Arch: "riscv64", Kernel: "vmlinuz"}, "error: amd64 or arm64"},
		{"firmware and a kernel", Options{Firmware: fw, Kernel: "vmlinuz"}, "error: leave them empty"},
		{"firmware and append", Options{Firmware: fw, Append: "quiet"}, "error: leave them empty"},
		{"firmware without vars", Options{Firmware: &Firmware{Code: code}}, "error: variable store"},
		{"firmware missing", Options{Firmware: &Firmware{Code: code, Vars: filepath.Join(dir, "nope")}}, "error: apt-get install ovmf"},
	} {
		argv, err := bootArgs(c.opts)
		got := strings.Join(argv, " ")
		if err != nil {
			got = "error: " + err.Error()
		}
		if want, isErr := strings.CutPrefix(c.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q, want an error containing %q", c.name, got, want)
			}
		} else if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// identityArgs: a UUID becomes SMBIOS type 1, which the arm64 guest has not.
func TestIdentityArgs(t *testing.T) {
	const uuid = "6b1c0d2e-0000-4000-8000-00000000000a"
	for _, c := range []struct {
		name string
		opts Options
		want string // argv joined, or "error: <part of the message>"
	}{
		{"none", Options{}, ""},
		{"uuid", Options{UUID: uuid}, "-smbios type=1,uuid=" + uuid},
		{"arm64", Options{Arch: "arm64", UUID: uuid}, "error: without SMBIOS"},
		{"a comma", Options{UUID: uuid + ",serial=x"}, "error: 8-4-4-4-12"},
	} {
		argv, err := identityArgs(c.opts)
		got := strings.Join(argv, " ")
		if err != nil {
			got = "error: " + err.Error()
		}
		if want, isErr := strings.CutPrefix(c.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q, want an error containing %q", c.name, got, want)
			}
		} else if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestNextLogFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var got []string
	for _, name := range []string{"TestA/grub", "TestA/grub", "TestB", "TestA/grub"} {
		f, err := NextLogFile(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(f))
	}
	if want := "TestA_grub.log TestA_grub.2.log TestB.log TestA_grub.3.log"; strings.Join(got, " ") != want {
		t.Errorf("log names %q, want %q", got, want)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("%s not created: %v", dir, err)
	}
}
