package config

import (
	"strings"
	"testing"
)

func TestParseDeviceSpec(t *testing.T) {
	tests := []struct {
		in   string
		want DeviceSpec
	}{
		{"LABEL=linux", DeviceSpec{Kind: DeviceLabel, Value: "linux"}},
		{"LABEL=My Disk", DeviceSpec{Kind: DeviceLabel, Value: "My Disk"}},
		{"LABEL=a=b", DeviceSpec{Kind: DeviceLabel, Value: "a=b"}},
		{"UUID=0A1B2C3D-4E5F-6789-ABCD-EF0123456789", DeviceSpec{Kind: DeviceUUID, Value: "0a1b2c3d-4e5f-6789-abcd-ef0123456789"}},
		{"UUID=1234-ABCD", DeviceSpec{Kind: DeviceUUID, Value: "1234-abcd"}},             // vfat
		{"PARTUUID=5d2f8ab1-02", DeviceSpec{Kind: DevicePartUUID, Value: "5d2f8ab1-02"}}, // MBR
		{"PARTUUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4/PARTNROFF=1", DeviceSpec{Kind: DevicePartUUID, Value: "0fc63daf-8483-4772-8e79-3d69d8477de4", PartNrOff: 1}},
		{"PARTLABEL=root", DeviceSpec{Kind: DevicePartLabel, Value: "root"}},
		{"/dev/vda1", DeviceSpec{Kind: DevicePath, Value: "/dev/vda1"}},
		{"/dev//nvme0n1p2", DeviceSpec{Kind: DevicePath, Value: "/dev/nvme0n1p2"}},
		{"/dev/mapper/root", DeviceSpec{Kind: DevicePath, Value: "/dev/mapper/root"}},
		{"/dev/disk/by-id/ata-X", DeviceSpec{Kind: DevicePath, Value: "/dev/disk/by-id/ata-X"}},
		{"/dev/disk/by-label/linux", DeviceSpec{Kind: DeviceLabel, Value: "linux"}},
		{`/dev/disk/by-label/My\x20Disk`, DeviceSpec{Kind: DeviceLabel, Value: "My Disk"}},
		{"/dev/disk/by-uuid/ABCD-1234", DeviceSpec{Kind: DeviceUUID, Value: "abcd-1234"}},
		{"/dev/disk/by-partuuid/5d2f8ab1-02", DeviceSpec{Kind: DevicePartUUID, Value: "5d2f8ab1-02"}},
		{"/dev/disk/by-partlabel/root", DeviceSpec{Kind: DevicePartLabel, Value: "root"}},
		{"8:1", DeviceSpec{Kind: DeviceNumber, Value: "8:1"}},
		{"259:0", DeviceSpec{Kind: DeviceNumber, Value: "259:0"}},
	}
	for _, tt := range tests {
		got, err := ParseDeviceSpec(tt.in)
		if err != nil {
			t.Errorf("ParseDeviceSpec(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDeviceSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		// String must give a spec that parses to the same device.
		again, err := ParseDeviceSpec(got.String())
		if err != nil || again != got {
			t.Errorf("ParseDeviceSpec(%q.String() = %q) = %+v, %v; want %+v", tt.in, got.String(), again, err, got)
		}
	}
}

func TestParseDeviceSpecErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // words the message must hold
	}{
		{"", []string{"empty", "LABEL="}},
		{"LABEL=", []string{"empty", "LABEL="}},
		{"PARTLABEL=", []string{"empty"}},
		{"UUID=", []string{"empty", "blkid"}},
		{"UUID=not-a-uuid", []string{"hex digits", "blkid"}},
		{"PARTUUID=zz", []string{"hex digits"}},
		{"PARTUUID=abcd/PARTNROFF=x", []string{"PARTNROFF=N"}},
		{"PARTUUID=abcd/foo", []string{"PARTNROFF=N"}},
		{"PARTUUID=/PARTNROFF=1", []string{"empty"}},
		{"label=linux", []string{"upper case", "LABEL="}},
		{"uuid=abcd", []string{"upper case", "UUID="}},
		{"DEVICE=x", []string{"unknown kind", `"DEVICE"`}},
		{"sda1", []string{"/dev/sda1"}},
		{"/etc/passwd", []string{"not under /dev"}},
		{"/dev/../etc/x", []string{"not under /dev"}},
		{"/dev/disk/by-label/", []string{"one name"}},
		{"/dev/disk/by-uuid/a/b", []string{"one name"}},
		{"8:x", []string{"major:minor"}},
		{"-1:2", []string{"major:minor"}},
	}
	for _, tt := range tests {
		_, err := ParseDeviceSpec(tt.in)
		if err == nil {
			t.Errorf("ParseDeviceSpec(%q) succeeded, want an error", tt.in)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseDeviceSpec(%q) = %q, want it to mention %q", tt.in, err, w)
			}
		}
	}
}
