package commands

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// Without --top and --rwlayer, gc needs a boot record that names them, and
// says what to give instead when there is none (TestGCUsage has the usage
// errors).
func TestGCNeedsBootRecordOrFlags(t *testing.T) {
	dir := t.TempDir()
	noRootflags := filepath.Join(dir, "boot.json")
	if err := bootrecord.Write(noRootflags, &bootrecord.Record{Schema: bootrecord.Schema, Cmdline: "root=LABEL=linux rw", RootDevicePath: "/dev/vda"}); err != nil {
		t.Fatal(err)
	}
	noDevice := filepath.Join(dir, "old.json")
	if err := bootrecord.Write(noDevice, &bootrecord.Record{Schema: bootrecord.Schema, Cmdline: "root=LABEL=linux rootflags=subvol=rw rw"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boot-json", filepath.Join(dir, "none.json")}, "or give both: gc --top DIR --rwlayer NAME"},
		{[]string{"--boot-json", filepath.Join(dir, "none.json"), "--top", dir}, "or give both: gc --top DIR --rwlayer NAME"},
		{[]string{"--boot-json", noRootflags}, `no rootflags=subvol= in "root=LABEL=linux rw"): give --rwlayer NAME`},
		{[]string{"--boot-json", noDevice}, "does not name the root device's node"},
	} {
		code, out, stderr := runCLI(nil, append([]string{"gc"}, c.args...)...)
		if code == 0 || !strings.Contains(stderr, c.want) || strings.Contains(out, "delete") {
			t.Errorf("gc %v: exit %d, stdout %q, stderr %q; want a failure with %q", c.args, code, out, stderr, c.want)
		}
	}
}
