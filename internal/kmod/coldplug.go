package kmod

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Modaliases returns the modalias of every device under sysDevices
// (/sys/devices): the string the kernel also sends as MODALIAS= in the
// device's "add" uevent, and that a driver's alias patterns match. Reading
// them is what udev's coldplug (`udevadm trigger`) achieves for the
// devices that existed before anyone listened to uevents. Symlinks
// (subsystem, driver, ...) are not followed, so each device is seen once.
// Unreadable entries are skipped: a device can vanish during the walk.
func Modaliases(sysDevices string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(sysDevices, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == sysDevices {
				return err
			}
			return nil
		}
		if d.Name() != "modalias" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read device aliases under %s: %w (is sysfs mounted?)", sysDevices, err)
	}
	return out, nil
}
