package uevent

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	msg := func(parts ...string) []byte { return []byte(strings.Join(parts, "\x00") + "\x00") }
	cases := []struct {
		name string
		in   []byte
		want Event
		err  bool
	}{
		{"virtio disk appears",
			msg("add@/devices/pci0000:00/0000:00:04.0/virtio1", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio1",
				"SUBSYSTEM=virtio", "MODALIAS=virtio:d00000002v00001AF4", "SEQNUM=812"),
			Event{Action: "add", DevPath: "/devices/pci0000:00/0000:00:04.0/virtio1", Subsystem: "virtio", Modalias: "virtio:d00000002v00001AF4"}, false},
		{"its block device",
			msg("add@/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", "ACTION=add", "SUBSYSTEM=block", "MAJOR=254", "MINOR=0", "DEVNAME=vda", "DEVTYPE=disk"),
			Event{Action: "add", DevPath: "/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", Subsystem: "block", DevName: "vda", DevType: "disk"}, false},
		{"no trailing NUL, value with '='",
			[]byte("change@/devices/x\x00SUBSYSTEM=block\x00DISK_MEDIA_CHANGE=1\x00X=a=b"),
			Event{Action: "change", DevPath: "/devices/x", Subsystem: "block"}, false},
		{"udev's re-broadcast", append([]byte("libudev\x00\xfe\xed\xca\xfe"), msg("ACTION=add")...), Event{}, true},
		{"no header", msg("ACTION=add", "SUBSYSTEM=block"), Event{}, true},
		{"empty", nil, Event{}, true},
	}
	for _, tc := range cases {
		got, err := Parse(tc.in)
		if tc.err {
			if !errors.Is(err, ErrNotKernel) {
				t.Errorf("%s: Parse error = %v, want ErrNotKernel", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got.Action != tc.want.Action || got.DevPath != tc.want.DevPath || got.Subsystem != tc.want.Subsystem ||
			got.Modalias != tc.want.Modalias || got.DevName != tc.want.DevName || got.DevType != tc.want.DevType {
			t.Errorf("%s: Parse = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if ev, _ := Parse([]byte("change@/devices/x\x00X=a=b")); ev.Env["X"] != "a=b" {
		t.Errorf("Env[X] = %q, want a=b", ev.Env["X"])
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("add@/devices/x\x00SUBSYSTEM=block\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Parse(b)
		if err == nil && (ev.Action == "" || !strings.HasPrefix(ev.DevPath, "/")) {
			t.Fatalf("Parse accepted %q as %+v", b, ev)
		}
	})
}
