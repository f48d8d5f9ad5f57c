package hook

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{nil, 0, ""},
		{[]string{"compress=zstd:3", "space_cache=v2"}, 0, "compress=zstd:3,space_cache=v2"},
		{[]string{"ro"}, unix.MS_RDONLY, ""},
		{[]string{"ro", "rw"}, 0, ""},
		{[]string{"rw", "ro"}, unix.MS_RDONLY, ""},
		{[]string{"nosuid", "nodev", "noexec"}, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{[]string{"nosuid", "suid"}, 0, ""},
		{[]string{"nodev", "dev"}, 0, ""},
		{[]string{"noexec", "exec"}, 0, ""},
		{[]string{"sync"}, unix.MS_SYNCHRONOUS, ""},
		{[]string{"sync", "async"}, 0, ""},
		{[]string{"dirsync"}, unix.MS_DIRSYNC, ""},
		{[]string{"noatime", "nodiratime"}, unix.MS_NOATIME | unix.MS_NODIRATIME, ""},
		{[]string{"noatime", "atime"}, 0, ""},
		{[]string{"nodiratime", "diratime"}, 0, ""},
		{[]string{"relatime"}, unix.MS_RELATIME, ""},
		{[]string{"relatime", "norelatime"}, 0, ""},
		{[]string{"strictatime"}, unix.MS_STRICTATIME, ""},
		{[]string{"lazytime"}, unix.MS_LAZYTIME, ""},
		{[]string{"lazytime", "nolazytime"}, 0, ""},
		{[]string{"silent"}, unix.MS_SILENT, ""},
		{[]string{"silent", "loud"}, 0, ""},
		{[]string{"defaults", "", " noatime ", "degraded", "device=/dev/vdb"}, unix.MS_NOATIME, "degraded,device=/dev/vdb"},
	} {
		flags, data := MountOptions(tc.opts)
		if flags != tc.flags || data != tc.data {
			t.Errorf("MountOptions(%q) = %#x, %q; want %#x, %q", tc.opts, flags, data, tc.flags, tc.data)
		}
	}
}
