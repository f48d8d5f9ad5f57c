package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/commands"
)

// The verbs, in the order `dockroot help` lists them.
func TestVerbList(t *testing.T) {
	var got []string
	for _, v := range commands.New(version).Verbs {
		got = append(got, v.Name)
	}
	want := []string{"doctor", "gc", "images", "initramfs", "install", "mark-good", "menu", "retry", "status", "toplayer", "update", "version", "watch"}
	if !slices.Equal(got, want) {
		t.Errorf("verbs %v, want %v", got, want)
	}
}

// The host tool never links the boot (STYLE.md, "two binaries, two import
// graphs"): hook is dockroot-init's.
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list; skipped in -short mode")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/dockroot/dockroot/hook" || strings.HasPrefix(p, "github.com/dockroot/dockroot/hook/") {
			t.Errorf("cmd/dockroot imports %s", p)
		}
	}
}
