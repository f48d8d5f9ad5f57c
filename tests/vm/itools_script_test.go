package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// TestItoolsScriptRootflags runs dockroot's initramfs-tools boot script
// (scripts/local-premount/dockroot) the way initramfs-tools' ORDER file
// does: the script, then `. /conf/param.conf` in the calling shell, in a
// chroot with the host's static busybox as /bin/sh. dockroot-init is a
// stand-in that writes what the real one writes to --rootflags-file (the
// Go side is hook.TestPrepareRootflagsFile); the test holds the script to
// what initramfs-tools then mounts: ROOTFLAGS rewritten to the layer
// dockroot chose, left alone when dockroot wrote nothing (no image), and
// panic when dockroot failed.
func TestItoolsScriptRootflags(t *testing.T) {
	testenv.RequireRoot(t, "chroot", "busybox")
	repo, err := vmkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(repo, "hook/initramfs-tools/scripts/local-premount/dockroot"))
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		init  string // the stand-in's body: $1 is --hook, $2 --rootflags-file=PATH
		want  string // ROOTFLAGS after the script and param.conf
		panic bool
		stale bool // a rootflags file is there before the script runs
	}{
		{"previous layer", `echo subvol=docker_rwlayer.prev.1,subvolid=258,compress=zstd > "${2#--rootflags-file=}"`,
			"-o subvol=docker_rwlayer.prev.1,subvolid=258,compress=zstd", false, false},
		{"fresh layer", `echo subvol=docker_rwlayer,subvolid=300 > "${2#--rootflags-file=}"`,
			"-o subvol=docker_rwlayer,subvolid=300", false, false},
		{"no image", `exit 0`, "-o subvol=docker_rwlayer", false, false},
		{"no image, stale file", `exit 0`, "-o subvol=docker_rwlayer", false, true},
		{"failure", `echo subvol=x > "${2#--rootflags-file=}"; exit 1`, "", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := []vmkit.File{
				{Path: "bin/busybox", Mode: 0o755, Data: string(bb)},
				{Path: "bin/sh", Link: "busybox"},
				{Path: "bin/cat", Link: "busybox"},
				{Path: "bin/rm", Link: "busybox"},
				{Path: "bin/mkdir", Link: "busybox"},
				{Path: "conf/param.conf", Data: "# written by initramfs-tools' init\n"},
				{Path: "run/"},
				// initramfs-tools' panic() drops to a shell; here it reports.
				{Path: "scripts/functions", Data: "panic() { echo \"PANIC: $*\"; exit 9; }\n"},
				{Path: "scripts/local-premount/dockroot", Mode: 0o755, Data: string(script)},
				{Path: "usr/lib/dockroot/dockroot-init", Mode: 0o755,
					Data: "#!/bin/sh\n[ \"$1\" = --hook ] || exit 3\nmkdir -p /run/dockroot\n" + tc.init + "\n"},
			}
			if tc.stale {
				files = append(files, vmkit.File{Path: "run/dockroot/rootflags", Data: "subvol=stale\n"})
			}
			if err := vmkit.WriteFiles(root, files); err != nil {
				t.Fatal(err)
			}
			// The ORDER file's two lines per script, in the init's shell.
			order := `export PATH=/bin; ROOTFLAGS="-o subvol=docker_rwlayer"
/scripts/local-premount/dockroot || { echo "EXIT $?"; exit 0; }
[ -e /conf/param.conf ] && . /conf/param.conf
echo "ROOTFLAGS=$ROOTFLAGS"`
			out, err := exec.Command("chroot", root, "/bin/sh", "-c", order).CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := string(out)
			if tc.panic {
				if !strings.Contains(got, "PANIC: dockroot could not prepare") || !strings.Contains(got, "EXIT 9") {
					t.Errorf("a failing dockroot-init did not panic:\n%s", got)
				}
				return
			}
			if want := "ROOTFLAGS=" + tc.want + "\n"; !strings.HasSuffix(got, want) {
				t.Errorf("after the script: %q, want %q", got, want)
			}
		})
	}
}
