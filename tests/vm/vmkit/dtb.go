package vmkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// VirtDTB writes to out the device tree QEMU generates for the arm64 virt
// board with memMB of memory and cpus CPUs (-machine dumpdtb), with a
// serial-number property added to its root node (fdtput, from Debian's
// device-tree-compiler): the property boards' firmware sets from the SoC's
// fused serial and the kernel shows as /proc/device-tree/serial-number,
// which QEMU's own tree lacks. Boot it with Options.DTB and the same memory
// and CPUs: QEMU then fills in /chosen (command line, initrd) as for its
// own tree.
func VirtDTB(out string, memMB, cpus int, serial string) error {
	argv, _, err := machine("arm64")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(out), ".virt-"+filepath.Base(out))
	argv[2] += ",dumpdtb=" + tmp // "-M", "virt"
	argv = append(argv, "-m", strconv.Itoa(memMB), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none")
	defer os.Remove(tmp)
	if err := run(argv...); err != nil {
		return fmt.Errorf("dump the virt board's device tree: %w", err)
	}
	if err := run("fdtput", "-t", "s", tmp, "/", "serial-number", serial); err != nil {
		return fmt.Errorf("add serial-number to the device tree (apt-get install device-tree-compiler): %w", err)
	}
	return os.Rename(tmp, out)
}
