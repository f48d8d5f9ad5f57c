// Package blockdev finds block devices the way the kernel's root= does, but
// without udev: it is what dockroot-init (PID 1 in the initramfs) uses to wait
// for root= and toplayer=, and what `dockroot doctor` uses to list disks.
//
// It scans /sys/class/block, makes sure each device has a node under /dev
// (devtmpfs normally creates it; otherwise it is made from the sysfs
// major:minor), and reads the on-disk metadata itself: btrfs, ext2/3/4, vfat
// and swap superblocks for LABEL= and UUID=, and GPT or MBR partition tables
// for PARTUUID= and PARTLABEL=. Nothing here uses cgo or libblkid, so the
// package builds into the static init binary.
//
// The parsing is pure (it works on an io.ReaderAt); the sysfs and /dev paths
// are fields of Scanner so tests can point them at a temporary tree.
package blockdev

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is how a Spec names a device.
type Kind string

// The kinds root= accepts, as the kernel and util-linux spell them.
const (
	KindLabel     Kind = "LABEL"     // filesystem label from the superblock
	KindUUID      Kind = "UUID"      // filesystem UUID from the superblock (case-insensitive)
	KindPartUUID  Kind = "PARTUUID"  // GPT unique partition GUID, or MBR "<disk-id>-<NN>" (case-insensitive)
	KindPartLabel Kind = "PARTLABEL" // GPT partition name
	KindPath      Kind = "PATH"      // a device node such as /dev/vda1
	KindDevNum    Kind = "DEVNUM"    // "major:minor", as the kernel's root=8:1
)

// Spec names the device to find, e.g. {KindLabel, "dockroot"} for
// root=LABEL=dockroot.
type Spec struct {
	Kind  Kind
	Value string
	// PartNrOff selects the partition this many numbers after the one
	// PARTUUID= names, as in the kernel's root=PARTUUID=.../PARTNROFF=1.
	PartNrOff int
}

// String renders the spec the way root= spells it.
func (s Spec) String() string {
	switch s.Kind {
	case KindPath, KindDevNum:
		return s.Value
	case KindPartUUID:
		if s.PartNrOff != 0 {
			return fmt.Sprintf("PARTUUID=%s/PARTNROFF=%d", s.Value, s.PartNrOff)
		}
	}
	return string(s.Kind) + "=" + s.Value
}

// byPathKinds maps the udev symlink directories people copy from fstab to
// the spec they stand for: there is no udev in the initramfs to create them.
var byPathKinds = []struct {
	dir  string
	kind Kind
}{
	{"/dev/disk/by-label/", KindLabel},
	{"/dev/disk/by-uuid/", KindUUID},
	{"/dev/disk/by-partuuid/", KindPartUUID},
	{"/dev/disk/by-partlabel/", KindPartLabel},
}

// ParseSpec parses a root=-style device name: LABEL=, UUID=, PARTUUID= (with
// an optional /PARTNROFF=N), PARTLABEL=, a /dev path, a bare kernel name such
// as "vda1", or "major:minor". /dev/disk/by-{label,uuid,partuuid,partlabel}/X
// paths are turned into the matching spec, undoing udev's \xNN escapes.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Spec{}, fmt.Errorf("device spec is empty: give LABEL=, UUID=, PARTUUID=, PARTLABEL= or a /dev path")
	}
	if k, v, ok := strings.Cut(s, "="); ok {
		kind := Kind(strings.ToUpper(k))
		switch kind {
		case KindLabel, KindUUID, KindPartLabel:
		case KindPartUUID:
			uuid, off, hasOff := strings.Cut(v, "/")
			if hasOff {
				n, ok := strings.CutPrefix(strings.ToUpper(off), "PARTNROFF=")
				nr, err := strconv.Atoi(n)
				if !ok || err != nil {
					return Spec{}, fmt.Errorf("device spec %q: after PARTUUID only /PARTNROFF=N is allowed", s)
				}
				return Spec{Kind: KindPartUUID, Value: uuid, PartNrOff: nr}, nonEmpty(s, uuid)
			}
		default:
			return Spec{}, fmt.Errorf("device spec %q: unknown kind %q (want LABEL, UUID, PARTUUID, PARTLABEL or a /dev path)", s, k)
		}
		return Spec{Kind: kind, Value: v}, nonEmpty(s, v)
	}
	for _, b := range byPathKinds {
		if v, ok := strings.CutPrefix(s, b.dir); ok {
			return Spec{Kind: b.kind, Value: unescapeUdev(v)}, nonEmpty(s, v)
		}
	}
	if maj, min, ok := strings.Cut(s, ":"); ok {
		if _, err := strconv.ParseUint(maj, 10, 32); err == nil {
			if _, err := strconv.ParseUint(min, 10, 32); err == nil {
				return Spec{Kind: KindDevNum, Value: s}, nil
			}
		}
		return Spec{}, fmt.Errorf("device spec %q: want major:minor in decimal, e.g. 8:1", s)
	}
	if !strings.HasPrefix(s, "/") {
		s = "/dev/" + s
	}
	return Spec{Kind: KindPath, Value: s}, nil
}

func nonEmpty(spec, v string) error {
	if v == "" {
		return fmt.Errorf("device spec %q has an empty value", spec)
	}
	return nil
}

// unescapeUdev undoes udev's \xNN escaping of symlink names (a space in a
// label becomes \x20 under /dev/disk/by-label).
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
