package config

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// DeviceKind says how a DeviceSpec names a block device.
type DeviceKind string

// The ways root=, toplayer= and resume= may name a device.
const (
	DeviceLabel     DeviceKind = "LABEL"     // filesystem label (LABEL=linux)
	DeviceUUID      DeviceKind = "UUID"      // filesystem UUID, lower-cased
	DevicePartUUID  DeviceKind = "PARTUUID"  // GPT partition GUID or MBR "<disk-id>-<NN>", lower-cased
	DevicePartLabel DeviceKind = "PARTLABEL" // GPT partition name
	DevicePath      DeviceKind = "PATH"      // a node under /dev, e.g. /dev/vda1
	DeviceNumber    DeviceKind = "DEVNUM"    // "major:minor", as the kernel's root=8:1
)

// DeviceSpec names the device of root=, toplayer= or resume=. It is the one
// device-name type: internal/blockdev finds the device a DeviceSpec names.
type DeviceSpec struct {
	Kind  DeviceKind
	Value string
	// PartNrOff is the kernel's PARTUUID=.../PARTNROFF=N: the partition N
	// numbers after the one the PARTUUID names.
	PartNrOff int
}

// String renders d as root= spells it.
func (d DeviceSpec) String() string {
	switch d.Kind {
	case DevicePath, DeviceNumber:
		return d.Value
	case DevicePartUUID:
		if d.PartNrOff != 0 {
			return fmt.Sprintf("PARTUUID=%s/PARTNROFF=%d", d.Value, d.PartNrOff)
		}
	}
	return string(d.Kind) + "=" + d.Value
}

// IsZero reports whether d names no device.
func (d DeviceSpec) IsZero() bool { return d.Kind == "" }

// udevDirs are the symlink directories people copy from fstab. There is no
// udev in dockroot's initramfs to create them, so they are turned into the
// spec they stand for and the device is found by its metadata instead.
var udevDirs = []struct {
	dir  string
	kind DeviceKind
}{
	{"/dev/disk/by-label/", DeviceLabel},
	{"/dev/disk/by-uuid/", DeviceUUID},
	{"/dev/disk/by-partuuid/", DevicePartUUID},
	{"/dev/disk/by-partlabel/", DevicePartLabel},
}

const deviceSpecHelp = "use LABEL=, UUID=, PARTUUID=, PARTLABEL=, a /dev/ path or major:minor, e.g. root=LABEL=linux"

// ParseDeviceSpec parses a device name as root= takes it: LABEL=, UUID=,
// PARTUUID= (with the kernel's optional /PARTNROFF=N), PARTLABEL=, a path
// under /dev, or major:minor in decimal. /dev/disk/by-{label,uuid,partuuid,
// partlabel}/X becomes the matching kind, undoing udev's \xNN escapes.
// The prefixes are upper case, as in the kernel and fstab. UUIDs are
// lower-cased because the kernel and blkid compare them case-insensitively.
func ParseDeviceSpec(s string) (DeviceSpec, error) {
	if s == "" {
		return DeviceSpec{}, fmt.Errorf("device is empty: %s", deviceSpecHelp)
	}
	if k, v, ok := strings.Cut(s, "="); ok {
		switch kind := DeviceKind(k); kind {
		case DeviceLabel, DevicePartLabel:
			if v == "" {
				return DeviceSpec{}, fmt.Errorf("device %q: the %s is empty: give the name after %s=", s, k, k)
			}
			return DeviceSpec{Kind: kind, Value: v}, nil
		case DeviceUUID:
			return parseUUIDSpec(s, kind, v, false)
		case DevicePartUUID:
			return parseUUIDSpec(s, kind, v, true)
		}
		if up := DeviceKind(strings.ToUpper(k)); up == DeviceLabel || up == DeviceUUID || up == DevicePartUUID || up == DevicePartLabel {
			return DeviceSpec{}, fmt.Errorf("device %q: write %s= in upper case, as the kernel and fstab do", s, up)
		}
		return DeviceSpec{}, fmt.Errorf("device %q: unknown kind %q: %s", s, k, deviceSpecHelp)
	}
	for _, u := range udevDirs {
		if v, ok := strings.CutPrefix(s, u.dir); ok {
			if v == "" || strings.Contains(v, "/") {
				return DeviceSpec{}, fmt.Errorf("device %q: want one name after %s", s, u.dir)
			}
			return ParseDeviceSpec(string(u.kind) + "=" + unescapeUdev(v))
		}
	}
	if strings.HasPrefix(s, "/") {
		clean := path.Clean(s)
		if !strings.HasPrefix(clean, "/dev/") {
			return DeviceSpec{}, fmt.Errorf("device %q is not under /dev: %s", s, deviceSpecHelp)
		}
		return DeviceSpec{Kind: DevicePath, Value: clean}, nil
	}
	if maj, min, ok := strings.Cut(s, ":"); ok {
		_, err1 := strconv.ParseUint(maj, 10, 32)
		_, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			return DeviceSpec{}, fmt.Errorf("device %q: want major:minor in decimal, e.g. 8:1", s)
		}
		return DeviceSpec{Kind: DeviceNumber, Value: s}, nil
	}
	// The kernel reads a bare name such as "sda1" as a hexadecimal dev_t,
	// which is never what was meant.
	return DeviceSpec{}, fmt.Errorf("device %q: a device node needs its /dev/ prefix (did you mean /dev/%s?), or %s", s, s, deviceSpecHelp)
}

func parseUUIDSpec(s string, kind DeviceKind, v string, partNrOff bool) (DeviceSpec, error) {
	d := DeviceSpec{Kind: kind}
	if partNrOff {
		if uuid, off, ok := strings.Cut(v, "/"); ok {
			n, hasPrefix := strings.CutPrefix(off, "PARTNROFF=")
			nr, err := strconv.Atoi(n)
			if !hasPrefix || err != nil || nr < 0 {
				return DeviceSpec{}, fmt.Errorf("device %q: after the PARTUUID only /PARTNROFF=N (N >= 0) may follow", s)
			}
			v, d.PartNrOff = uuid, nr
		}
	}
	if v == "" {
		return DeviceSpec{}, fmt.Errorf("device %q: the %s is empty: give it after %s=, as blkid prints it", s, kind, kind)
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '-') {
			return DeviceSpec{}, fmt.Errorf("device %q: a %s has only hex digits and '-' (got %q); copy it from blkid", s, kind, r)
		}
	}
	d.Value = strings.ToLower(v)
	return d, nil
}

// unescapeUdev undoes udev's \xNN escaping of link names: a label
// "my disk" appears as /dev/disk/by-label/my\x20disk.
func unescapeUdev(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
