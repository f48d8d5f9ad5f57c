package kmod

import (
	"os"
	"path/filepath"
	"strings"
)

// Modaliases returns the modalias of every device under sys/devices that
// has one: the string the kernel also sends as MODALIAS= in the device's
// "add" uevent, and that a driver's alias patterns match. Reading them is
// what udev's coldplug (`udevadm trigger`) achieves for the devices that
// existed before anyone listened to uevents.
//
// It reads them through sys/bus/*/devices/* and sys/class/*/*, the links
// the kernel makes to every device on a bus or in a class, instead of
// walking the whole sys/devices tree: a modalias is a bus's or a class's
// attribute, so the set is the same, and under QEMU TCG the full walk
// costs seconds where these few directories cost milliseconds. A device
// linked from both is read once. Unreadable entries are skipped: a device
// can vanish meanwhile.
func Modaliases(sys string) ([]string, error) {
	var dirs []string
	buses, err := filepath.Glob(filepath.Join(sys, "bus", "*", "devices"))
	if err != nil {
		return nil, err
	}
	classes, _ := filepath.Glob(filepath.Join(sys, "class", "*"))
	dirs = append(buses, classes...)
	if len(dirs) == 0 {
		if _, err := os.Stat(filepath.Join(sys, "devices")); err != nil {
			return nil, &os.PathError{Op: "read device aliases (is sysfs mounted?)", Path: sys, Err: err}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			link, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // not a link: sysfs keeps only links here
			}
			dev := link
			if !filepath.IsAbs(dev) {
				dev = filepath.Join(dir, link)
			}
			if seen[dev] {
				continue
			}
			seen[dev] = true
			b, err := os.ReadFile(filepath.Join(dev, "modalias"))
			if err != nil {
				continue
			}
			if s := strings.TrimSpace(string(b)); s != "" {
				out = append(out, s)
			}
		}
	}
	return out, nil
}
