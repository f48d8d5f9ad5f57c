package config

import (
	"os"
	"strings"
	"testing"
)

// The README's kernel-parameter table is the users' reference: it must have
// a row for every option dockroot reads, with its dockroot.json field, and
// no row for one it does not.
func TestReadmeTableListsEveryOption(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Kernel parameters\n")
	if !ok {
		t.Fatal(`README.md has no "## Kernel parameters" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{} // key as the first cell shows it, backticks removed -> JSON cell
	for _, line := range strings.Split(section, "\n") {
		// "| key | json | default | meaning |": cells[0] is before the first bar.
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|")
		if !strings.HasPrefix(line, "| `") || len(cells) < 5 {
			continue
		}
		rows[strings.ReplaceAll(strings.TrimSpace(cells[1]), "`", "")] = cells[2]
	}
	for _, o := range Options() {
		json, ok := rows[o.Key]
		switch {
		case !ok:
			t.Errorf("README's kernel-parameter table has no row for %s", o.Key)
		case o.JSON != "" && !strings.Contains(json, "`\""+o.JSON+"\"`"):
			t.Errorf("README's row for %s gives the dockroot.json field as %s, want \"%s\"", o.Key, json, o.JSON)
		}
		delete(rows, o.Key)
	}
	for key := range rows {
		t.Errorf("README's kernel-parameter table has a row for %s, which dockroot does not read", key)
	}
}
