package initramfs

import (
	"debug/elf"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestCheckStaticExecutable(t *testing.T) {
	static, err := os.ReadFile(standInInit(t))
	must(t, err)
	m, err := checkStaticExecutable("init", "standin", static)
	if err != nil {
		t.Fatalf("static Go binary rejected: %v", err)
	}
	if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && m != want {
		t.Errorf("machine %v, want %v", m, want)
	}

	if _, err := checkStaticExecutable("init", "text", []byte("#!/bin/sh\n")); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("script: %v", err)
	}
	if _, err := checkStaticExecutable("init", "mod.ko", fakeModule(t, elf.EM_X86_64, "license=GPL")); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Errorf("relocatable object: %v", err)
	}

	// The host's own tools are dynamically linked on Debian.
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		_, err = checkStaticExecutable("busybox", p, data)
		if err == nil || !strings.Contains(err.Error(), "dynamically linked") || !strings.Contains(err.Error(), "ld-linux") {
			t.Errorf("%s: %v, want a dynamically linked error naming the loader", p, err)
		}
		return
	}
	t.Log("no /bin/true to try a dynamic binary with")
}
