// Package layering holds the rules of dockroot's package layout (see
// docs/DESIGN.md, "Packages"): which packages the init may link, that the
// host tool does not link the boot steps, that no package imports one on
// its own level or above, and that each shared name is spelled once.
//
// Unit tier: it reads the sources with go list and go/parser; it builds
// nothing and needs no privileges.
package layering

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dockroot/dockroot"

// levels places every package of the module. A package may import only
// packages on a lower level; a new package must be given a level here,
// which is the moment to decide where it belongs.
var levels = map[string]int{
	// Leaves: names and small mechanisms every side shares.
	"internal/layout":     0,
	"internal/atomicfile": 0,
	"internal/securejoin": 0,
	"internal/mountinfo":  0,
	"internal/btrfs":      0,
	"internal/machineid":  0,
	"internal/uevent":     0,

	// The configuration and the image-store contract.
	"config":   1,
	"snapshot": 1,

	// Libraries both binaries may use; none knows who calls it.
	"toplayer":             2,
	"snapshot/graphdriver": 2,
	"snapshot/podman":      2,
	"snapshot/containerd":  2,
	"snapshot/rwlayer":     3,
	"snapshot/stores":      3,
	"snapshot/storetest":   3,
	"internal/blockdev":    2,
	"internal/kmod":        2,
	"internal/freespace":   2,
	"internal/bootstate":   2,
	"internal/kernel":      2,
	"internal/bootrecord":  3,
	"internal/resume":      3,

	// The boot (run half): what dockroot-init runs.
	"hook": 5,

	// Host tools (build half and the CLI's nouns).
	"internal/initramfs":   4,
	"internal/imagekernel": 5,
	"internal/bootmenu":    4,
	"internal/doctor":      6,
	"internal/install":     6,
	"internal/cli":         4,
	"internal/toplevel":    0,
	"internal/gc":          4,
	"internal/capture":     4,
	"internal/images":      6,
	"internal/update":      7,
	"internal/watch":       8,
	"internal/commands":    9,
	"internal/distpkg":     4,

	// Test support: may use any library, never the mains.
	"internal/testenv": 4,

	// Binaries.
	"cmd/dockroot-init": 10,
	"cmd/dockroot":      10,
	"dist/package":      10,
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	CgoFiles   []string
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// TestPackageLevels: every non-test package of the module has a level, and
// imports only packages on lower levels. tests/... may import anything but
// the mains.
func TestPackageLevels(t *testing.T) {
	for _, p := range list(t, "./...") {
		name, _ := rel(p.ImportPath)
		if strings.HasPrefix(name, "tests/") {
			for _, imp := range p.Imports {
				if r, ok := rel(imp); ok && strings.HasPrefix(r, "cmd/") {
					t.Errorf("%s imports the binary %s", name, r)
				}
			}
			continue
		}
		lv, ok := levels[name]
		if !ok {
			t.Errorf("package %s has no level in tests/layering: give it one (and a line in docs/DESIGN.md)", name)
			continue
		}
		for _, imp := range p.Imports {
			r, ok := rel(imp)
			if !ok {
				continue
			}
			if il, known := levels[r]; known && il >= lv {
				t.Errorf("%s (level %d) imports %s (level %d): a package imports only packages below it", name, lv, r, il)
			}
		}
	}
}

// initAllowed is everything of the module dockroot-init may link: the boot
// and the libraries it runs. No host tool (initramfs builder, menus,
// install, doctor, the CLI framework), no Docker client.
var initAllowed = []string{
	"hook", "config", "toplayer",
	"snapshot", "snapshot/graphdriver", "snapshot/podman", "snapshot/containerd", "snapshot/stores", "snapshot/rwlayer",
	"internal/layout", "internal/atomicfile", "internal/securejoin", "internal/mountinfo", "internal/btrfs",
	"internal/blockdev", "internal/kmod", "internal/freespace", "internal/bootstate", "internal/bootrecord", "internal/resume",
	"internal/machineid", "internal/uevent",
}

// TestImportGraph holds the two binaries' import graphs apart: PID 1 links
// nothing host-only and no cgo, and the host tool does not link the boot
// steps (it shares their schema through internal/bootrecord instead).
func TestImportGraph(t *testing.T) {
	for _, p := range list(t, "-deps", "./cmd/dockroot-init") {
		if len(p.CgoFiles) > 0 {
			t.Errorf("dockroot-init links %s, which uses cgo", p.ImportPath)
		}
		for _, bad := range []string{"github.com/moby/", "github.com/docker/", "github.com/u-root/u-root/pkg/cpio", "net/http"} {
			if strings.HasPrefix(p.ImportPath, bad) {
				t.Errorf("dockroot-init links %s (host-only)", p.ImportPath)
			}
		}
		if r, ok := rel(p.ImportPath); ok && r != "cmd/dockroot-init" && !slices.Contains(initAllowed, r) {
			t.Errorf("dockroot-init links %s, which is not on the init's list (tests/layering initAllowed)", r)
		}
	}
	for _, p := range list(t, "-deps", "./cmd/dockroot") {
		if r, ok := rel(p.ImportPath); ok && (r == "hook" || strings.HasPrefix(r, "hook/")) {
			t.Errorf("dockroot (the host tool) links the boot steps %s", r)
		}
	}
}

// sharedNames are names the init and the host tool must agree on. Each is
// spelled in internal/layout only; everything else refers to the constant.
var sharedNames = []string{
	".dockroot", "var/lib/docker", "graphdriver", "var/lib/containers/storage", "var/lib/containerd", "containerd/daemon", ".prev.", ".dockroot-tmp", ".adopted",
	"etc/dockroot/modules.list", "/etc/dockroot/modules.list", "etc/dockroot/modules.table", "/etc/dockroot/modules.table",
	"etc/dockroot.json", "/etc/dockroot.json", "etc/docker-btrfs.json", "/etc/docker-btrfs.json",
	"/run/dockroot", "/run/dockroot/boot.json",
}

// TestSharedNamesDefinedOnce finds string literals that spell a shared name
// outside internal/layout, in the non-test sources of the module.
func TestSharedNamesDefinedOnce(t *testing.T) {
	for _, p := range list(t, "./...") {
		r, _ := rel(p.ImportPath)
		if r == "internal/layout" || strings.HasPrefix(r, "tests/") {
			continue
		}
		files, _ := filepath.Glob(filepath.Join("../..", r, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err == nil && slices.Contains(sharedNames, s) {
					t.Errorf("%s: %q is a shared name: use its internal/layout constant", fset.Position(lit.Pos()), s)
				}
				return true
			})
		}
	}
}
