package blockdev

import (
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
)

func TestDeviceMatches(t *testing.T) {
	d := Device{
		Name: "nvme0n1p2", Path: "/dev/nvme0n1p2", Major: 259, Minor: 2, PartN: 2, Parent: "nvme0n1",
		Superblock: Superblock{Type: "btrfs", Label: "Root", UUID: "0d1e2f30-1111-4222-8333-444455556666"},
		PartUUID:   "1c8d42e8-ab02-4b7d-983c-d5c4484ce512", PartLabel: "linux",
	}
	noLabel := Device{Name: "vdb", Path: "/dev/vdb"}
	cases := []struct {
		spec config.DeviceSpec
		dev  Device
		want bool
	}{
		{config.DeviceSpec{Kind: config.DeviceLabel, Value: "Root"}, d, true},
		{config.DeviceSpec{Kind: config.DeviceLabel, Value: "root"}, d, false}, // labels are case-sensitive, as in the kernel and blkid
		{config.DeviceSpec{Kind: config.DeviceLabel, Value: ""}, noLabel, false},
		{config.DeviceSpec{Kind: config.DeviceUUID, Value: "0D1E2F30-1111-4222-8333-444455556666"}, d, true},
		{config.DeviceSpec{Kind: config.DeviceUUID, Value: "0d1e2f30"}, d, false},
		{config.DeviceSpec{Kind: config.DevicePartUUID, Value: "1C8D42E8-AB02-4B7D-983C-D5C4484CE512"}, d, true},
		{config.DeviceSpec{Kind: config.DevicePartLabel, Value: "linux"}, d, true},
		{config.DeviceSpec{Kind: config.DevicePartLabel, Value: "Linux"}, d, false},
		{config.DeviceSpec{Kind: config.DevicePath, Value: "/dev/nvme0n1p2"}, d, true},
		{config.DeviceSpec{Kind: config.DevicePath, Value: "/dev/nvme0n1"}, d, false},
		{config.DeviceSpec{Kind: config.DeviceNumber, Value: "259:2"}, d, true},
		{config.DeviceSpec{Kind: config.DeviceNumber, Value: "259:20"}, d, false},
		{config.DeviceSpec{Kind: config.DeviceUUID, Value: ""}, noLabel, false},
	}
	for _, tc := range cases {
		if got := tc.dev.Matches(tc.spec); got != tc.want {
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
