// Package vmkit boots dockroot in QEMU: it fetches Debian's kernel, builds
// the dockroot binaries and initramfs, makes btrfs disk images holding a
// Docker data root (built by a private dockerd), runs qemu-system-x86_64 (or
// qemu-system-aarch64's virt board for arm64) with TCG and watches the
// serial console for marker lines.
//
// It is the shared machinery of the VM test tier (tests/vm) and of
// `make demo` (tests/demo), so it reports errors instead of taking a
// *testing.T; the tests wrap it with t.Fatal and t.Cleanup.
//
// Everything it creates on the host (loop devices, mounts, dockerd, QEMU)
// is released by the Close/Stop/Kill function it hands back: the machines
// these run on have only eight loop devices, shared.
package vmkit
