package initramfs

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// checkStaticExecutable verifies that data is an ELF executable that needs
// no dynamic loader: the initramfs has no /lib/ld-linux*.so, and the kernel
// fails to exec a program whose PT_INTERP is missing (then panics with "No
// working init found" when it is /init). Static PIE binaries have no
// PT_INTERP either and are fine. It returns the ELF machine for comparing
// with the kernel's modules.
func checkStaticExecutable(what, file string, data []byte) (elf.Machine, error) {
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("%s %s is not an ELF executable: %w", what, file, err)
	}
	defer ef.Close()
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return 0, fmt.Errorf("%s %s is an ELF %s, not an executable", what, file, ef.Type)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := readInterp(p)
			return 0, fmt.Errorf("%s %s is dynamically linked (needs %s), but the initramfs has no shared libraries: use a statically linked build", what, file, interp)
		}
	}
	return ef.Machine, nil
}

func readInterp(p *elf.Prog) (string, error) {
	b := make([]byte, p.Filesz)
	if _, err := p.ReadAt(b, 0); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(b, "\x00")), nil
}

// elfMachine returns the machine of an ELF file (a kernel module).
func elfMachine(data []byte) (elf.Machine, error) {
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	defer ef.Close()
	return ef.Machine, nil
}
