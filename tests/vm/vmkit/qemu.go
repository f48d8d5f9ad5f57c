package vmkit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Drive is a disk image attached as a virtio block device: the first is
// /dev/vda, the next /dev/vdb, and so on.
type Drive struct {
	File   string
	Serial string // shown in /sys/block/vdX/serial; optional
}

// Firmware is UEFI firmware in two pflash drives, as Debian's ovmf package
// ships it: the code, attached read-only, and a variable store, which the
// firmware writes (boot entries, BootOrder, a bootloader's variables).
type Firmware struct {
	Code string // OVMF_CODE.fd
	// Vars is the variable store QEMU attaches writable: give each boot a
	// fresh copy of OVMF_VARS.fd (CopyImage) so no boot entry or default
	// carries over from an earlier boot.
	Vars string
}

// Debian's OVMF (package ovmf), for Options.Firmware.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// Options describe one boot.
type Options struct {
	// Arch is the guest's architecture as Go names it: "" or "amd64" (a PC,
	// qemu-system-x86_64), or "arm64" (QEMU's virt board with a Cortex-A57,
	// qemu-system-aarch64, a direct kernel boot only).
	Arch string
	// DTB, for arm64, is the device tree QEMU hands the kernel instead of
	// the one it generates for the virt board (which has no serial-number;
	// see VirtDTB).
	DTB string
	// Kernel and Initrd are loaded by QEMU itself (-kernel, -initrd), which
	// then boots the kernel with KernelArgs and Append.
	Kernel string // vmlinuz
	Initrd string
	// Firmware, instead, boots the machine the way hardware does: the
	// firmware finds a bootloader on the drives (with no boot entries,
	// OVMF runs the ESP's removable-media path \EFI\BOOT\BOOTX64.EFI) and
	// the bootloader loads the kernel with its own command line. Kernel,
	// Initrd and Append must then be empty.
	Firmware *Firmware
	// Append is added to the kernel command line after the harness's own
	// "console=ttyS0 panic=-1"; arguments for init go after " -- ".
	Append string
	Drives []Drive
	// UUID is the machine's SMBIOS system UUID (-smbios type=1,uuid=), what
	// the guest reads as /sys/class/dmi/id/product_uuid and
	// toplayer_path='s %u: two VMs with different UUIDs are two laptops of
	// one fleet. Empty: QEMU's default, no UUID.
	UUID     string
	MemoryMB int // default 1024
	CPUs     int // default 1
	// Failures end the wait early; nil means DefaultFailures.
	Failures []Failure
	// Live receives the console as it arrives (os.Stdout for the demo).
	Live io.Writer
	// LogFile, if set, receives a copy of the console.
	LogFile string
}

// VM is a running QEMU.
type VM struct {
	Console *Console
	Argv    []string

	opts    Options
	cmd     *exec.Cmd
	stdin   io.WriteCloser // the serial console's input (-serial stdio)
	log     *os.File
	exited  chan struct{}
	waitErr error
	cursor  int // where the next Expect starts searching
	kill    sync.Once
}

// KernelArgs is the command line the harness always passes: the console on
// the first serial port (which QEMU connects to our pipe), and an immediate
// reboot on panic, which -no-reboot turns into QEMU exiting. no_timer_check
// skips the kernel's IO-APIC timer sanity check, which TCG fails when the
// host is loaded ("IO-APIC + timer doesn't work!" panics, seen under load).
const KernelArgs = "console=ttyS0 panic=-1 no_timer_check"

// KernelArgsArm64 is KernelArgs for the virt board, whose first serial
// port is a PL011 (ttyAMA0) and which has no IO-APIC.
const KernelArgsArm64 = "console=ttyAMA0 panic=-1"

// machine returns the QEMU binary and machine arguments for arch, and the
// kernel arguments the harness always passes there.
func machine(arch string) (argv []string, kernelArgs string, err error) {
	switch arch {
	case "", "amd64":
		// "max" gives the guest SSE4.2 and friends, as real hardware has, so
		// modules like crc32c-intel load as they would there.
		return []string{"qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"}, KernelArgs, nil
	case "arm64":
		// cortex-a57, not max: a real core's feature set, and TCG emulates
		// it faster than max's (pointer authentication, SVE).
		return []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg"}, KernelArgsArm64, nil
	}
	return nil, "", fmt.Errorf("guest architecture %q: amd64 or arm64", arch)
}

// Start boots QEMU with TCG (KVM hangs on the machines this runs on).
func Start(opts Options) (*VM, error) {
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 1024
	}
	if opts.CPUs == 0 {
		opts.CPUs = 1
	}
	if opts.Failures == nil {
		opts.Failures = DefaultFailures
	}
	argv, _, err := machine(opts.Arch)
	if err != nil {
		return nil, err
	}
	argv = append(argv,
		"-m", strconv.Itoa(opts.MemoryMB),
		"-smp", strconv.Itoa(opts.CPUs),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "stdio",
		"-net", "none",
		"-no-reboot",
	)
	boot, err := bootArgs(opts)
	if err != nil {
		return nil, err
	}
	argv = append(argv, boot...)
	id, err := identityArgs(opts)
	if err != nil {
		return nil, err
	}
	argv = append(argv, id...)
	for i, d := range opts.Drives {
		// cache=unsafe: nothing outlives QEMU but the file, and QEMU's writes
		// reach it through the host page cache when it exits. The device is
		// separate from the drive because only the device takes serial=.
		id := fmt.Sprintf("disk%d", i)
		argv = append(argv, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,cache=unsafe,id=%s", d.File, id))
		dev := "virtio-blk-pci,drive=" + id
		if d.Serial != "" {
			dev += ",serial=" + d.Serial
		}
		argv = append(argv, "-device", dev)
	}

	vm := &VM{Argv: argv, opts: opts, exited: make(chan struct{})}
	vm.Console = NewConsole(opts.Live)
	var out io.Writer = vm.Console
	if opts.LogFile != "" {
		f, err := os.Create(opts.LogFile)
		if err != nil {
			return nil, fmt.Errorf("create the console log: %w", err)
		}
		vm.log = f
		out = io.MultiWriter(vm.Console, f)
	}
	vm.cmd = exec.Command(argv[0], argv[1:]...)
	vm.cmd.Stdout = out
	vm.cmd.Stderr = out
	if vm.stdin, err = vm.cmd.StdinPipe(); err != nil {
		vm.closeLog()
		return nil, err
	}
	if err := vm.cmd.Start(); err != nil {
		vm.closeLog()
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		vm.Console.Close()
		vm.closeLog()
		close(vm.exited)
	}()
	return vm, nil
}

// bootArgs is how QEMU starts the guest: its own loader with the kernel
// and initrd, or the firmware's pflash drives.
func bootArgs(opts Options) ([]string, error) {
	_, kernelArgs, err := machine(opts.Arch)
	if err != nil {
		return nil, err
	}
	fw := opts.Firmware
	if fw == nil {
		argv := []string{"-kernel", opts.Kernel, "-initrd", opts.Initrd,
			"-append", strings.TrimSpace(kernelArgs + " " + opts.Append)}
		if opts.DTB != "" {
			if opts.Arch != "arm64" {
				return nil, fmt.Errorf("device tree %s: only the arm64 virt board boots with one", opts.DTB)
			}
			argv = append(argv, "-dtb", opts.DTB)
		}
		return argv, nil
	}
	switch {
	case opts.Arch == "arm64":
		return nil, fmt.Errorf("boot with firmware %s: the arm64 guest boots its kernel directly; leave Firmware empty", fw.Code)
	case opts.Kernel != "" || opts.Initrd != "" || opts.Append != "":
		return nil, fmt.Errorf("boot with firmware %s: Kernel, Initrd and Append are the bootloader's to choose; leave them empty", fw.Code)
	case fw.Code == "" || fw.Vars == "":
		return nil, fmt.Errorf("boot with firmware: both the code (%q) and a variable store (%q) are needed, e.g. %s and a copy of %s", fw.Code, fw.Vars, OVMFCode, OVMFVars)
	}
	for _, f := range []string{fw.Code, fw.Vars} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("boot with firmware: %w (apt-get install ovmf)", err)
		}
	}
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + fw.Code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + fw.Vars,
	}, nil
}

// identityArgs give the guest the machine identity opts asks for.
func identityArgs(opts Options) ([]string, error) {
	if opts.UUID == "" {
		return nil, nil
	}
	if opts.Arch == "arm64" {
		// QEMU's virt board hands SMBIOS tables only to UEFI firmware; a
		// direct kernel boot sees none. Such boards are told apart by the
		// device tree's serial-number (DTB).
		return nil, fmt.Errorf("machine UUID %s: the arm64 guest boots without firmware and so without SMBIOS; give it a device tree with a serial-number (DTB)", opts.UUID)
	}
	if strings.ContainsAny(opts.UUID, ", ") {
		return nil, fmt.Errorf("machine UUID %q: want 8-4-4-4-12 hex digits", opts.UUID)
	}
	return []string{"-smbios", "type=1,uuid=" + opts.UUID}, nil
}

func (vm *VM) closeLog() {
	if vm.log != nil {
		_ = vm.log.Close()
	}
}

// Expect waits until text appears on the console after the previous
// Expect's match. It fails early on a Failure line or when QEMU exits, and
// after timeout; the error carries the console tail.
func (vm *VM) Expect(text string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, ended, changed := vm.Console.snapshot()
		if i := strings.Index(out[vm.cursor:], text); i >= 0 {
			vm.cursor += i + len(text)
			return nil
		}
		if _, _, ok := FindFailure(out, vm.opts.Failures); ok {
			// The failure line may still be arriving (the serial console
			// delivers it in pieces); a panic ends QEMU at once (panic=-1,
			// -no-reboot), so give it a moment and report the whole line.
			if !ended {
				select {
				case <-vm.exited:
				case <-time.After(3 * time.Second):
				}
				out = vm.Console.String()
			}
			f, line, _ := FindFailure(out, vm.opts.Failures)
			return vm.bootError(strconv.Quote(text), fmt.Sprintf("%s: %s", f.Name, line), out)
		}
		if ended {
			return vm.bootError(strconv.Quote(text), "QEMU exited ("+vm.exitStatus()+") before it appeared", out)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return vm.bootError(strconv.Quote(text), "timeout after "+timeout.String(), vm.Console.String())
		}
	}
}

// Send types text on the serial console, as a user at the keyboard would
// (a passphrase and "\n" at cryptsetup's prompt).
func (vm *VM) Send(text string) error {
	if vm.Exited() {
		return errors.New("send to the console: QEMU has exited")
	}
	if _, err := io.WriteString(vm.stdin, text); err != nil {
		return fmt.Errorf("send to the console: %w", err)
	}
	return nil
}

// WaitExit waits for QEMU to exit on its own (the guest powered off or,
// with -no-reboot, rebooted). It fails on a Failure line or after timeout.
func (vm *VM) WaitExit(timeout time.Duration) error {
	select {
	case <-vm.exited:
	case <-time.After(timeout):
		return vm.bootError("QEMU to exit", "timeout after "+timeout.String(), vm.Console.String())
	}
	out := vm.Console.String()
	if f, line, ok := FindFailure(out, vm.opts.Failures); ok {
		return vm.bootError("QEMU to exit", fmt.Sprintf("%s: %s", f.Name, line), out)
	}
	if vm.waitErr != nil {
		return vm.bootError("QEMU to exit", "QEMU failed: "+vm.exitStatus(), out)
	}
	return nil
}

// Exited reports whether QEMU has exited.
func (vm *VM) Exited() bool {
	select {
	case <-vm.exited:
		return true
	default:
		return false
	}
}

func (vm *VM) exitStatus() string {
	if vm.waitErr == nil {
		return "exit status 0"
	}
	return vm.waitErr.Error()
}

func (vm *VM) bootError(want, reason, out string) error {
	return &BootError{Want: want, Reason: reason, Tail: Tail(out, 60), LogFile: vm.opts.LogFile}
}

// Kill stops QEMU if it still runs and waits for it; safe to call more
// than once and after QEMU exited.
func (vm *VM) Kill() {
	vm.kill.Do(func() {
		if !vm.Exited() {
			_ = vm.cmd.Process.Kill()
		}
		select {
		case <-vm.exited:
		case <-time.After(10 * time.Second):
		}
	})
}
