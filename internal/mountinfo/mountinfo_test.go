package mountinfo

import (
	"reflect"
	"testing"
)

func TestUnescape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/mnt/plain", "/mnt/plain"},
		{`/mnt/with\040space`, "/mnt/with space"},
		{`/a\011tab\012nl\134bs`, "/a\ttab\nnl\\bs"},
		{`/trailing\04`, `/trailing\04`}, // too short: kept
		{`/not\999octal`, `/not\999octal`},
		{`\040`, " "},
	} {
		if got := Unescape(c.in); got != c.want {
			t.Errorf("Unescape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	data := []byte(`22 1 0:21 / / rw,relatime shared:1 - btrfs /dev/sda2 rw,subvol=/@
30 22 8:1 / /boot/efi rw,relatime shared:5 master:2 - vfat /dev/sda1 rw
31 22 0:21 /@home /home\040dir rw - btrfs /dev/sda2 rw
short line
40 22 0:50 / /odd rw
`)
	got, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Root: "/", MountPoint: "/", FSType: "btrfs", Source: "/dev/sda2"},
		{Root: "/", MountPoint: "/boot/efi", FSType: "vfat", Source: "/dev/sda1"},
		{Root: "/@home", MountPoint: "/home dir", FSType: "btrfs", Source: "/dev/sda2"},
		{Root: "/", MountPoint: "/odd"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}
