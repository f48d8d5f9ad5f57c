// Package machineid reads what tells one machine from another, for the
// placeholders of toplayer_path= (%u, %s, %m), and expands them.
//
// dockroot-init calls it while finding the top layer, before any network
// or udev exists, so it reads only the kernel's own files: DMI from
// /sys/class/dmi/id, the device tree's serial-number on boards without
// DMI, and the MAC address of the first wired interface from
// /sys/class/net. config calls Check for the placeholder syntax, so a typo
// is refused when the configuration is read, not at the machine it
// concerns.
//
// It is a leaf the init links: it imports nothing of dockroot's.
package machineid

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Sources are where the identity is read from. Tests point them at
// t.TempDir().
type Sources struct {
	DMI string // the DMI attributes: /sys/class/dmi/id
	Net string // the network interfaces: /sys/class/net
	// DeviceTree are the device tree's serial-number files, the first
	// one readable wins. /proc/device-tree is a link to
	// /sys/firmware/devicetree/base, and either may be what is mounted.
	DeviceTree []string
}

// Default returns the kernel's paths.
func Default() Sources {
	return Sources{
		DMI:        "/sys/class/dmi/id",
		Net:        "/sys/class/net",
		DeviceTree: []string{"/proc/device-tree/serial-number", "/sys/firmware/devicetree/base/serial-number"},
	}
}

// Value is one identity value: Text, sanitised for one path component, or
// Err saying why there is none. From names the file or interface it came
// from, for the log.
type Value struct {
	Text string
	From string
	Err  error
}

func (v Value) String() string {
	if v.Err != nil {
		return "? (" + v.Err.Error() + ")"
	}
	return v.Text + " (" + v.From + ")"
}

// Identity is the machine as the placeholders see it.
type Identity struct {
	UUID   Value // %u: DMI product_uuid, lower case; else the device tree's serial number
	Serial Value // %s: DMI product_serial; else the device tree's serial number
	MAC    Value // %m: the first wired interface's address, dash-separated
}

// String is the identity for a log line that must let an administrator
// name the machine's directory: every placeholder with its value and
// source, or why it has none.
func (id Identity) String() string {
	return fmt.Sprintf("%%u=%s, %%s=%s, %%m=%s", id.UUID, id.Serial, id.MAC)
}

// ErrNotRead is the Err of every value of an Identity nobody read (the
// zero Identity is unusable, never empty strings).
var ErrNotRead = errors.New("this boot reads no machine identity")

// Unknown is the Identity of a boot that reads none.
func Unknown() Identity {
	v := Value{Err: ErrNotRead}
	return Identity{UUID: v, Serial: v, MAC: v}
}

// maxLen bounds a value, so that a log line holding all three stays one
// /dev/kmsg record and a path component stays far below NAME_MAX.
const maxLen = 64

// Read reads the identity. It never fails as a whole: each value carries
// its own error.
//
// %u and %s fall back to the device tree's serial-number where DMI gives
// no value for them: no /sys/class/dmi/id at all (arm64 and arm boards
// booted with a device tree, not SMBIOS), or a table whose field is
// missing, blank or a UUID SMBIOS reserves for "not set" (U-Boot's EFI
// writes such tables). The serial stands in for the UUID as it is, lower
// case, rather than a UUID derived from it: it is the number printed on
// the board and shown in the boot log, so the administrator can name the
// directory after it. A read error other than "no value" is kept: it is
// not the machine's identity changing.
func (s Sources) Read() Identity {
	id := Identity{
		UUID:   s.dmi("product_uuid", strings.ToLower),
		Serial: s.dmi("product_serial", nil),
		MAC:    s.mac(),
	}
	if errors.Is(id.UUID.Err, errNoValue) {
		id.UUID = s.deviceTree(strings.ToLower, id.UUID.Err)
	}
	if errors.Is(id.Serial.Err, errNoValue) {
		id.Serial = s.deviceTree(nil, id.Serial.Err)
	}
	return id
}

func (s Sources) dmi(attr string, conv func(string) string) Value {
	if s.DMI == "" {
		return Value{Err: absent("no DMI " + attr)}
	}
	p := filepath.Join(s.DMI, attr)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Value{Err: absent("no DMI " + attr)}
		}
		return Value{Err: fmt.Errorf("DMI %s: %w", attr, err)}
	}
	v := value(string(b), conv, "DMI "+attr)
	if attr == "product_uuid" && v.Err == nil && unsetUUID(v.Text) {
		// SMBIOS 2.6+: all FF means not present, all 0 not set. (Linux
		// hides both since 2.6.x, dmi_save_uuid; a table read some other
		// way may not.)
		return Value{Err: noValue(fmt.Sprintf("DMI product_uuid is %s, which SMBIOS reserves for \"not set\"", v.Text))}
	}
	return v
}

// unsetUUID reports the two UUIDs the SMBIOS specification reserves
// (7.2.1): all bits set, "not present", and all zero, "not set".
func unsetUUID(u string) bool {
	hex := strings.ReplaceAll(u, "-", "")
	return len(hex) == 32 && (strings.Trim(hex, "0") == "" || strings.Trim(hex, "f") == "")
}

// errNoValue matches a value the firmware does not give: a missing file, a
// blank string, a reserved UUID. Only these fall back to the device tree.
var errNoValue = errors.New("no value")

// noValue is a value the firmware left blank or reserved; it matches
// errNoValue.
type noValue string

func (e noValue) Error() string      { return string(e) }
func (noValue) Is(target error) bool { return target == errNoValue }

// absent is a value the machine does not have at all; it matches
// fs.ErrNotExist and errNoValue.
type absent string

func (e absent) Error() string { return string(e) }
func (absent) Is(target error) bool {
	return target == fs.ErrNotExist || target == errNoValue
}

func (s Sources) deviceTree(conv func(string) string, dmiErr error) Value {
	for _, p := range s.DeviceTree {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v := value(string(b), conv, "device tree serial-number")
		if v.Err == nil && strings.Trim(v.Text, "0") == "" {
			// Firmware of boards without a fused serial writes zeros: a
			// value every such board shares is no identity.
			v = Value{Err: fmt.Errorf("device tree serial-number is %s, which says the board has none", v.Text)}
		}
		if v.Err != nil {
			return Value{Err: fmt.Errorf("%v, and %w", dmiErr, v.Err)}
		}
		return v
	}
	return Value{Err: fmt.Errorf("%v, and no device-tree serial-number", dmiErr)}
}

// value trims what the kernel pads values with (a newline after DMI
// strings, a NUL after device-tree strings) and sanitises the rest.
func value(raw string, conv func(string) string, from string) Value {
	t := strings.TrimSpace(strings.Trim(raw, "\x00\n"))
	if conv != nil {
		t = conv(t)
	}
	if t == "" {
		return Value{Err: noValue(from + " is empty")}
	}
	return Value{Text: Sanitize(t), From: from}
}

// Sanitize makes s one safe path component: every byte but ASCII letters,
// digits, '.', '-' and '_' becomes '_' (a multi-byte character one '_'), a
// leading '.' becomes '_' (no ".", "..", or hidden names), and it is cut
// to 64 bytes. Firmware strings are kept, junk included ("To Be Filled By
// O.E.M." becomes To_Be_Filled_By_O.E.M.): an administrator sees the same
// text in the log and names the directory after it.
func Sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.' && b.Len() > 0:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxLen {
			break
		}
	}
	return b.String()
}

// mac returns the address of the first wired interface by name: not lo,
// not wireless, backed by a device (not a bridge, bond, veth or tun) and
// of type ARPHRD_ETHER (1).
func (s Sources) mac() Value {
	if s.Net == "" {
		return Value{Err: errors.New("no network interfaces read")}
	}
	ents, err := os.ReadDir(s.Net) // sorted by name
	if err != nil {
		return Value{Err: fmt.Errorf("no wired network interface: %w", err)}
	}
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(s.Net, name)
		if name == "lo" || exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) ||
			!exists(filepath.Join(dir, "device")) {
			continue
		}
		if t, err := os.ReadFile(filepath.Join(dir, "type")); err != nil || strings.TrimSpace(string(t)) != "1" {
			continue
		}
		a, err := os.ReadFile(filepath.Join(dir, "address"))
		addr := strings.ToLower(strings.TrimSpace(string(a)))
		if err != nil || addr == "" || strings.Trim(addr, "0:") == "" {
			continue
		}
		// Dashes, not the kernel's colons: FAT, exFAT and Windows refuse
		// ':' in names, and a top layer may be on such a stick.
		return Value{Text: Sanitize(strings.ReplaceAll(addr, ":", "-")), From: name}
	}
	return Value{Err: fmt.Errorf("no wired network interface in %s (an Ethernet device that is not lo, wireless or virtual; its driver may not be loaded yet)", s.Net)}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// Placeholders are the letters after '%' that Expand knows.
var Placeholders = []struct {
	Letter  byte
	Meaning string
}{
	{'u', "the DMI product UUID (lower case), or the device tree's serial number"},
	{'s', "the DMI product serial, or the device tree's serial number"},
	{'m', "the MAC address of the first wired network interface, dash-separated"},
	{'%', "a percent sign"},
}

// Check reports a '%' not followed by a known letter.
func Check(tmpl string) error {
	_, err := expand(tmpl, nil)
	return err
}

// HasPlaceholders reports whether tmpl uses an identity value (%% is not one).
func HasPlaceholders(tmpl string) bool {
	return strings.Contains(strings.ReplaceAll(tmpl, "%%", ""), "%")
}

// MissingError is a placeholder whose value this machine does not have.
type MissingError struct {
	Placeholder string // "%u"
	Err         error
}

func (e *MissingError) Error() string { return e.Placeholder + " has no value: " + e.Err.Error() }
func (e *MissingError) Unwrap() error { return e.Err }

// Expand replaces the placeholders of tmpl with id's values. A value the
// machine does not have is a *MissingError; an unknown placeholder is an
// error too (Check finds it earlier).
func Expand(tmpl string, id Identity) (string, error) { return expand(tmpl, &id) }

func expand(tmpl string, id *Identity) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '%' {
			b.WriteByte(tmpl[i])
			continue
		}
		if i+1 == len(tmpl) {
			return "", errors.New(`ends in a lone "%": write %% for a percent sign`)
		}
		i++
		var v Value
		switch tmpl[i] {
		case '%':
			b.WriteByte('%')
			continue
		case 'u':
			v = pick(id, func(id *Identity) Value { return id.UUID })
		case 's':
			v = pick(id, func(id *Identity) Value { return id.Serial })
		case 'm':
			v = pick(id, func(id *Identity) Value { return id.MAC })
		default:
			return "", fmt.Errorf("unknown placeholder %%%c: known are %%u (DMI product UUID), %%s (DMI product serial), %%m (first wired MAC address) and %%%% (a percent sign)", tmpl[i])
		}
		if v.Err != nil {
			return "", &MissingError{Placeholder: "%" + string(tmpl[i]), Err: v.Err}
		}
		b.WriteString(v.Text)
	}
	return b.String(), nil
}

func pick(id *Identity, f func(*Identity) Value) Value {
	if id == nil {
		return Value{Text: "x"} // Check: syntax only
	}
	return f(id)
}
