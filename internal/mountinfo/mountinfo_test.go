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

func TestBelow(t *testing.T) {
	mounts := []Mount{
		{MountPoint: "/"},
		{MountPoint: "/tmp/x"},
		{MountPoint: "/tmp/x/a"},
		{MountPoint: "/tmp/xy"}, // a sibling sharing the prefix, not below /tmp/x
		{MountPoint: "/tmp/x/a/b c"},
		{MountPoint: "/tmp/x"}, // stacked on the first /tmp/x
		{MountPoint: "/srv/d"},
		{MountPoint: "/tmp/x/z"},
	}
	for _, tc := range []struct {
		name string
		dirs []string
		want []string
	}{
		{"one dir, deepest then latest first", []string{"/tmp/x"}, []string{"/tmp/x/a/b c", "/tmp/x/z", "/tmp/x/a", "/tmp/x", "/tmp/x"}},
		{"trailing slash", []string{"/tmp/x/a/"}, []string{"/tmp/x/a/b c", "/tmp/x/a"}},
		{"two dirs", []string{"/srv", "/tmp/xy"}, []string{"/srv/d", "/tmp/xy"}},
		{"nothing below", []string{"/var"}, nil},
		{"no dirs", nil, nil},
	} {
		if got := Below(mounts, tc.dirs...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Below(%q) = %q, want %q", tc.name, tc.dirs, got, tc.want)
		}
	}
}
