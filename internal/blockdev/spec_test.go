package blockdev

import (
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	cases := []struct {
		in      string
		want    Spec
		wantErr bool
	}{
		{"LABEL=dockroot", Spec{Kind: KindLabel, Value: "dockroot"}, false},
		{"label=dockroot", Spec{Kind: KindLabel, Value: "dockroot"}, false},
		{"LABEL=a=b", Spec{Kind: KindLabel, Value: "a=b"}, false},
		{"UUID=0D1E2F30-1111-4222-8333-444455556666", Spec{Kind: KindUUID, Value: "0D1E2F30-1111-4222-8333-444455556666"}, false},
		{"PARTUUID=deadbeef-02", Spec{Kind: KindPartUUID, Value: "deadbeef-02"}, false},
		{"PARTUUID=1c8d42e8-ab02-4b7d-983c-d5c4484ce512/PARTNROFF=1", Spec{Kind: KindPartUUID, Value: "1c8d42e8-ab02-4b7d-983c-d5c4484ce512", PartNrOff: 1}, false},
		{"PARTUUID=x/PARTNROFF=-1", Spec{Kind: KindPartUUID, Value: "x", PartNrOff: -1}, false},
		{"PARTUUID=x/OTHER=1", Spec{}, true},
		{"PARTLABEL=dockroot root", Spec{Kind: KindPartLabel, Value: "dockroot root"}, false},
		{"/dev/vda1", Spec{Kind: KindPath, Value: "/dev/vda1"}, false},
		{"vda1", Spec{Kind: KindPath, Value: "/dev/vda1"}, false},
		{"/dev/disk/by-label/my\\x20root", Spec{Kind: KindLabel, Value: "my root"}, false},
		{"/dev/disk/by-uuid/abcd-1234", Spec{Kind: KindUUID, Value: "abcd-1234"}, false},
		{"/dev/disk/by-partuuid/deadbeef-01", Spec{Kind: KindPartUUID, Value: "deadbeef-01"}, false},
		{"/dev/disk/by-partlabel/root", Spec{Kind: KindPartLabel, Value: "root"}, false},
		{"8:1", Spec{Kind: KindDevNum, Value: "8:1"}, false},
		{"8:x", Spec{}, true},
		{"ZFS=pool/root", Spec{}, true},
		{"LABEL=", Spec{}, true},
		{"", Spec{}, true},
	}
	for _, tc := range cases {
		got, err := ParseSpec(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSpecString(t *testing.T) {
	for _, in := range []string{"LABEL=x", "UUID=ab", "PARTUUID=ab/PARTNROFF=2", "PARTLABEL=p q", "/dev/sda1", "8:1"} {
		s, err := ParseSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		if s.String() != in {
			t.Errorf("ParseSpec(%q).String() = %q", in, s.String())
		}
	}
}

func TestSpecMatches(t *testing.T) {
	d := Device{
		Name: "nvme0n1p2", Path: "/dev/nvme0n1p2", Major: 259, Minor: 2, PartN: 2, Parent: "nvme0n1",
		Superblock: Superblock{Type: "btrfs", Label: "Root", UUID: "0d1e2f30-1111-4222-8333-444455556666"},
		PartUUID:   "1c8d42e8-ab02-4b7d-983c-d5c4484ce512", PartLabel: "linux",
	}
	noLabel := Device{Name: "vdb", Path: "/dev/vdb"}
	cases := []struct {
		spec Spec
		dev  Device
		want bool
	}{
		{Spec{Kind: KindLabel, Value: "Root"}, d, true},
		{Spec{Kind: KindLabel, Value: "root"}, d, false}, // labels are case-sensitive, as in the kernel and blkid
		{Spec{Kind: KindLabel, Value: ""}, noLabel, false},
		{Spec{Kind: KindUUID, Value: "0D1E2F30-1111-4222-8333-444455556666"}, d, true},
		{Spec{Kind: KindUUID, Value: "0d1e2f30"}, d, false},
		{Spec{Kind: KindPartUUID, Value: "1C8D42E8-AB02-4B7D-983C-D5C4484CE512"}, d, true},
		{Spec{Kind: KindPartLabel, Value: "linux"}, d, true},
		{Spec{Kind: KindPartLabel, Value: "Linux"}, d, false},
		{Spec{Kind: KindPath, Value: "/dev/nvme0n1p2"}, d, true},
		{Spec{Kind: KindPath, Value: "/dev/nvme0n1"}, d, false},
		{Spec{Kind: KindDevNum, Value: "259:2"}, d, true},
		{Spec{Kind: KindDevNum, Value: "259:20"}, d, false},
		{Spec{Kind: KindUUID, Value: ""}, noLabel, false},
	}
	for _, tc := range cases {
		if got := tc.spec.Matches(tc.dev); got != tc.want {
			t.Errorf("%s matches %s = %v, want %v", tc.spec, tc.dev.Name, got, tc.want)
		}
	}
}

func TestWaitLimit(t *testing.T) {
	cases := []struct {
		name        string
		opts        WaitOptions
		wantLimit   time.Duration
		wantForever bool
	}{
		{"nothing given", WaitOptions{}, DefaultTimeout, false},
		{"rootwait", WaitOptions{RootWait: true}, 0, true},
		{"dockroot.timeout", WaitOptions{Timeout: 5 * time.Second}, 5 * time.Second, false},
		{"dockroot.timeout caps rootwait", WaitOptions{RootWait: true, Timeout: 2 * time.Minute}, 2 * time.Minute, false},
		{"rootdelay does not change the limit", WaitOptions{RootDelay: 3 * time.Second}, DefaultTimeout, false},
	}
	for _, tc := range cases {
		limit, forever := tc.opts.Limit()
		if limit != tc.wantLimit || forever != tc.wantForever {
			t.Errorf("%s: Limit() = %s, %v; want %s, %v", tc.name, limit, forever, tc.wantLimit, tc.wantForever)
		}
	}
}
