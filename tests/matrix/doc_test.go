package matrix

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/hook"
)

// The generated part of docs/RELIABILITY.md sits between these markers.
const (
	docFile     = "../../docs/RELIABILITY.md"
	beginMarker = "<!-- matrix:begin (generated from tests/matrix by TestReliabilityDoc; DOCKROOT_UPDATE_DOCS=1 go test ./tests/matrix -run TestReliabilityDoc rewrites it) -->"
	endMarker   = "<!-- matrix:end -->"
)

// TestReliabilityDoc keeps the matrix tables in docs/RELIABILITY.md equal
// to Cases and the injectors, so the document lists exactly what is
// tested. Unit tier: it runs no case.
func TestReliabilityDoc(t *testing.T) {
	data, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q … %q", docFile, beginMarker, endMarker)
	}
	want := beginMarker + "\n" + renderTables() + endMarker
	if doc[i:j+len(endMarker)] == want {
		return
	}
	if os.Getenv("DOCKROOT_UPDATE_DOCS") == "1" {
		out := doc[:i] + want + doc[j+len(endMarker):]
		if err := os.WriteFile(docFile, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(docFile)
		t.Logf("rewrote the matrix tables in %s", abs)
		return
	}
	t.Errorf("the matrix tables in %s are out of date with tests/matrix; run DOCKROOT_UPDATE_DOCS=1 go test ./tests/matrix -run TestReliabilityDoc", docFile)
}

func renderTables() string {
	var b strings.Builder
	b.WriteString("Base command line of every case: `" + baseCmdline + "` (the case's own parameters are appended; the last of a repeated key wins).\n\n")
	b.WriteString("| # | Case | Cmdline + | Disk state | Outcome | Console must match (regexp) | Previous layer after |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for n, c := range allCases() {
		var disk []string
		for _, m := range c.Disk {
			disk = append(disk, m.Desc)
		}
		w := c.Want
		var outcome string
		prev := w.Prev
		switch {
		case w.Booted && w.Fallback != "":
			outcome = "boots " + w.Fallback + " as it was left (onfail=previous)"
			if prev == PrevDefault {
				prev = PrevUntouched
			}
		case w.Booted && w.Existing != "":
			outcome = "boots " + w.Existing + " as it was left (dockroot.layer=)"
			if prev == PrevDefault {
				prev = PrevUntouched
			}
		case w.Booted:
			outcome = "boots a fresh layer"
			if w.Image != "" {
				outcome += " of " + w.Image
			}
			if prev == PrevDefault {
				prev = PrevRotated
			}
		default:
			outcome = fmt.Sprintf("fails at `%s`; onfail=%s → %s", w.Step, w.Policy, onfailAction(w.Policy))
			if prev == PrevDefault {
				prev = PrevUntouched
			}
		}
		for _, ch := range w.Checks {
			outcome += "; " + ch.Desc
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s |\n", n+1, cell(c.Name), code(c.Cmdline), cell(strings.Join(disk, "; ")),
			cell(outcome), code(w.Console), prev)
	}
	b.WriteString("\nEvery case also checks: no `*.dockroot-tmp` subvolume is left, exactly the expected layers exist outside the Docker store, " +
		"the previous layer keeps its subvolume ID and marker file where the column says, and the Docker store (image metadata and subvolumes) is unchanged.\n\n")

	b.WriteString("Step-boundary failure injection (`TestStepBoundaryFailures`): each row fails the boot at the end of one step, then the same disk boots normally and must reach switch_root with a fresh layer of the image, exactly keep+1 layers, no temporary subvolume, and layer and boot state files that parse.\n\n")
	b.WriteString("| Step | Failure injected after the step's work |\n|---|---|\n")
	for _, st := range hook.Steps() {
		var via []string
		for _, inj := range injectors {
			if inj.step == st.Name {
				via = append(via, "`"+inj.via+"` returns an error")
			}
		}
		via = append(via, "panic right after the step (`Env.AfterStep`)")
		fmt.Fprintf(&b, "| `%s` (%s) | %s |\n", st.Name, st.Desc, strings.Join(via, "; "))
	}
	return b.String()
}

func cell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

func code(s string) string {
	if s == "" {
		return "–"
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}
