// Package uefi is the proof of dockroot's boot menus: OVMF (UEFI firmware
// in QEMU, TCG) boots a GPT disk whose ESP holds GRUB, systemd-boot or
// rEFInd with the entries `dockroot menu` wrote and the kernels `dockroot install` put
// there, and whose btrfs partition holds the Docker data root with two
// tags. The default entry must boot tag A; after the default is switched
// to tag B's entry, tag B must boot.
//
// The consoles are kept in tests/uefi/testdata/out/<Test>.log. Set
// DOCKROOT_VM_CONSOLE=1 to see them live.
package uefi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// What the disk holds: tags A and B of one image family, the rw layer name
// and the data root, as the menu's kernel parameters name them.
const (
	tagA       = "uefi:a"
	tagB       = "uefi:b"
	rwLayer    = "docker_rwlayer"
	dockerPath = "docker"
	rootLabel  = "linux"
	bootPath   = "dockroot" // the boot directory on the ESP: /dockroot
	marker     = "DOCKROOT-UEFI-MARKER"
)

// bootTimeout is how long firmware, bootloader, kernel and dockroot may take
// from power-on to the image's marker under TCG. Measured: about a minute;
// OVMF alone takes 10-20 seconds.
const bootTimeout = 8 * time.Minute

// markerInit is each tag's /sbin/init: it prints which tag booted, how
// (the command line, whether the firmware was UEFI, systemd-boot's choice
// from its LoaderEntrySelected variable) and powers off.
func markerInit(tag string) string {
	return `#!/bin/sh
echo "` + marker + ` tag=` + tag + `"
echo "CMDLINE: $(cat /proc/cmdline)"
[ -d /sys/firmware/efi ] && echo "FIRMWARE: UEFI"
modprobe efivarfs 2>/dev/null
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
for v in /sys/firmware/efi/efivars/LoaderEntrySelected-*; do
	[ -f "$v" ] && echo "LOADER-ENTRY: $(tail -c +5 "$v" | tr -d '\000')"
done
echo DOCKROOT-UEFI-END
exec /bin/busybox poweroff -f
`
}

func TestUEFIMenus(t *testing.T) {
	testenv.RequireVM(t)
	testStart := time.Now()
	for _, tool := range []string{"sgdisk", "mkfs.vfat", "mcopy", "grub-mkstandalone", "depmod"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("UEFI test: %s not found (apt-get install gdisk dosfstools mtools grub-efi-amd64-bin grub-common kmod)", tool)
		}
	}
	for _, f := range []string{vmkit.OVMFCode, vmkit.OVMFVars, systemdBootEFI, grubEFIDir, refindEFI} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("UEFI test: %v (apt-get install ovmf systemd-boot-efi grub-efi-amd64-bin refind)", err)
		}
	}
	t.Cleanup(func() { t.Logf("TestUEFIMenus took %v in all", time.Since(testStart).Round(time.Second)) })
	m := newMachine(t)

	t.Run("grub", func(t *testing.T) {
		for _, c := range []struct{ def, want string }{{"", "a"}, {tagB, "b"}} {
			esp := m.espTree(t)
			args := []string{"menu", "--bootloader", "grub", "--grub-style", "cfg"}
			if c.def != "" {
				args = append(args, "--default", c.def)
			}
			m.menu(t, esp, "LABEL="+rootLabel, append(args, "-o", filepath.Join(esp, bootPath, "grub.cfg"))...)
			m.grubLoader(t, esp)
			console := m.boot(t, esp, c.want)
			if !strings.Contains(console, "BOOT_IMAGE=/"+bootPath+"/uefi-"+c.want+"/vmlinuz") {
				t.Errorf("the kernel command line has no BOOT_IMAGE= of tag %s's kernel: GRUB did not boot that entry", c.want)
			}
		}
	})

	t.Run("systemd-boot", func(t *testing.T) {
		for _, c := range []struct{ def, want string }{{"dockroot-uefi-a.conf", "a"}, {"dockroot-uefi-b.conf", "b"}} {
			esp := m.espTree(t)
			// The root is found by its GPT partition name here, and by the
			// partition's GUID under rEFInd: dockroot-init reads the GPT itself.
			m.menu(t, esp, "PARTLABEL=linux", "menu", "--bootloader", "systemd-boot", "-o", esp)
			m.systemdBoot(t, esp, c.def)
			console := m.boot(t, esp, c.want)
			if !rootFoundOn(console, "/dev/vda2") {
				t.Errorf("dockroot did not report finding root=PARTLABEL=linux on /dev/vda2")
			}
			if got := loaderEntry(console); got != c.def {
				t.Errorf("systemd-boot's LoaderEntrySelected is %q, want %q", got, c.def)
			}
		}
	})

	// rEFInd reads refind.conf beside its binary; the menu is included
	// from there. Its default_selection matches a title: first the line
	// the menu output suggests for its default (tag A), then tag B's
	// title. rEFInd's EFI-stub boot adds initrd=\<path> to the command line,
	// which shows which entry it started.
	t.Run("refind", func(t *testing.T) {
		for _, c := range []struct{ def, want string }{{"", "a"}, {`"dockroot uefi:b"`, "b"}} {
			esp := m.espTree(t)
			conf := filepath.Join(esp, "EFI", "BOOT", "dockroot.conf")
			if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
				t.Fatal(err)
			}
			m.menu(t, esp, "PARTUUID="+m.partUUID, "menu", "--bootloader", "refind", "-o", conf)
			def := c.def
			if def == "" {
				def = suggestedSelection(t, conf)
			}
			m.refind(t, esp, def)
			console := m.boot(t, esp, c.want)
			if !rootFoundOn(console, "/dev/vda2") {
				t.Errorf("dockroot did not report finding root=PARTUUID=%s on /dev/vda2", m.partUUID)
			}
			if want := `initrd=\` + bootPath + `\uefi-` + c.want + `\initramfs.img`; !strings.Contains(console, want) {
				t.Errorf("the kernel command line lacks %s: rEFInd did not boot tag %s's entry", want, c.want)
			}
		}
	})
}

// rootFoundOn reports whether dockroot-init's device wait found the root
// on dev (its step line ends with the device path).
func rootFoundOn(console, dev string) bool {
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.Contains(line, "wait for the root device: done") && strings.HasSuffix(line, ": "+dev) {
			return true
		}
	}
	return false
}

var selectionRE = regexp.MustCompile(`(?m)^# To boot .* by default, put this line in refind.conf: default_selection (".*")$`)

// suggestedSelection is the default_selection line `dockroot menu
// --bootloader refind` suggests in the file conf.
func suggestedSelection(t *testing.T, conf string) string {
	t.Helper()
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	m := selectionRE.FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s suggests no default_selection:\n%s", conf, data)
	}
	return string(m[1])
}

var loaderEntryRE = regexp.MustCompile(`LOADER-ENTRY: (\S+)`)

func loaderEntry(console string) string {
	if m := loaderEntryRE.FindStringSubmatch(console); m != nil {
		return m[1]
	}
	return ""
}

// boot splices the ESP built from esp into the disk, boots it with OVMF
// and checks that exactly tag want's init ran, under UEFI, with the
// console on the serial port; it returns the console.
func (m *machine) boot(t *testing.T, esp, want string) string {
	t.Helper()
	m.writeESP(t, esp)
	start := time.Now()
	vm := m.start(t)
	if err := vm.Expect(marker+" tag=", bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := vm.Expect("DOCKROOT-UEFI-END", time.Minute); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if err := vm.WaitExit(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	console := strings.ReplaceAll(vm.Console.String(), "\r", "")
	got := regexp.MustCompile(marker + ` tag=(\S+)`).FindStringSubmatch(console)
	if got == nil || got[1] != want {
		t.Fatalf("booted tag %v, want %s:\n%s", got, want, vmkit.Tail(console, 40))
	}
	for _, w := range []string{"FIRMWARE: UEFI", "docker_image=uefi:" + want, "console=ttyS0", "rootflags=subvol=" + rwLayer} {
		if !strings.Contains(console, w) {
			t.Errorf("console lacks %q:\n%s", w, vmkit.Tail(console, 30))
		}
	}
	t.Logf("tag %s booted in %v (power-on to marker, TCG)\n%s", want, elapsed.Round(time.Second), evidence(console))
	return console
}

// evidence picks the lines that show what booted and how.
func evidence(console string) string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		for _, k := range []string{marker, "CMDLINE:", "FIRMWARE:", "LOADER-ENTRY:", "Linux version", "dockroot: BOOTED", "switch_root"} {
			if strings.Contains(l, k) {
				out = append(out, "  "+strings.TrimSpace(l))
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// menu runs `dockroot menu` with the parameters of this disk; the caller
// adds the bootloader, the output and the default.
func (m *machine) menu(t *testing.T, esp, root string, args ...string) {
	t.Helper()
	args = append(args,
		"--root", root, "--rwlayer", rwLayer, "--docker-path", dockerPath,
		"--boot-dir", filepath.Join(esp, bootPath), "--loader-path", "/"+bootPath,
		"--append", "console=ttyS0", "--append", "panic=-1",
		// Under TCG on a busy host the kernel's check that the IO-APIC
		// timer ticks can time out and panic ("IO-APIC + timer doesn't
		// work!", arch/x86/kernel/apic/io_apic.c check_timer);
		// no_timer_check skips it, as cloud images do for VMs.
		"--append", "no_timer_check")
	out := m.cli(t, args...)
	t.Logf("dockroot %s:\n%s", strings.Join(args, " "), out)
}

func (m *machine) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(m.product.CLI, args...)
	cmd.Env = append(os.Environ(), "DOCKROOT_INIT="+m.product.Init)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dockroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// grubLoader puts a standalone GRUB on the ESP as the removable-media
// loader, whose embedded grub.cfg finds the ESP and sources the menu
// dockroot wrote there (source, not configfile, keeps the timeout).
func (m *machine) grubLoader(t *testing.T, esp string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "embedded.cfg")
	embedded := fmt.Sprintf(`insmod part_gpt
insmod fat
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
search --no-floppy --set=root --file /%s/grub.cfg
source /%s/grub.cfg
`, bootPath, bootPath)
	if err := os.WriteFile(cfg, []byte(embedded), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(esp, "EFI", "BOOT", "BOOTX64.EFI")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "grub-mkstandalone", "-O", "x86_64-efi", "-o", out,
		"--modules=part_gpt fat search search_fs_file linux normal configfile echo serial terminal",
		"boot/grub/grub.cfg="+cfg)
}

// systemdBoot puts systemd-boot on the ESP as the removable-media loader
// with loader.conf choosing def and booting it without waiting.
func (m *machine) systemdBoot(t *testing.T, esp, def string) {
	t.Helper()
	out := filepath.Join(esp, "EFI", "BOOT", "BOOTX64.EFI")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(systemdBootEFI)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("default %s\ntimeout 0\nconsole-mode keep\n", def)
	if err := os.WriteFile(filepath.Join(esp, "loader", "loader.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, _ := filepath.Glob(filepath.Join(esp, "loader", "entries", "*.conf"))
	for _, e := range entries {
		data, _ := os.ReadFile(e)
		t.Logf("%s:\n%s", strings.TrimPrefix(e, esp), data)
	}
}

// refind puts rEFInd on the ESP as the removable-media loader, with a
// refind.conf that shows only the included dockroot entries, in text mode
// (so its menu reaches the serial console), and boots def after a second.
func (m *machine) refind(t *testing.T, esp, def string) {
	t.Helper()
	dir := filepath.Join(esp, "EFI", "BOOT")
	data, err := os.ReadFile(refindEFI)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "BOOTX64.EFI"), data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("timeout 1\ntextonly\nscanfor manual\ndefault_selection %s\ninclude dockroot.conf\n", def)
	if err := os.WriteFile(filepath.Join(dir, "refind.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("refind.conf:\n%s", conf)
}
