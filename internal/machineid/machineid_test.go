package machineid

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSys builds a /sys (and /proc/device-tree) under t.TempDir() from
// "path=content" entries; "path->target" makes a symlink, "path/" a
// directory.
func fakeSys(t *testing.T, entries ...string) Sources {
	t.Helper()
	root := t.TempDir()
	for _, e := range entries {
		switch {
		case strings.Contains(e, "->"):
			name, target, _ := strings.Cut(e, "->")
			mk(t, filepath.Dir(filepath.Join(root, name)))
			if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
				t.Fatal(err)
			}
		case strings.HasSuffix(e, "/"):
			mk(t, filepath.Join(root, e))
		default:
			name, content, _ := strings.Cut(e, "=")
			mk(t, filepath.Dir(filepath.Join(root, name)))
			if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o400); err != nil {
				t.Fatal(err)
			}
		}
	}
	return Sources{
		DMI:        filepath.Join(root, "sys/class/dmi/id"),
		Net:        filepath.Join(root, "sys/class/net"),
		DeviceTree: []string{filepath.Join(root, "proc/device-tree/serial-number"), filepath.Join(root, "sys/firmware/devicetree/base/serial-number")},
	}
}

func mk(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// wired is an Ethernet interface backed by a device.
func wired(name, addr string) []string {
	d := "sys/class/net/" + name + "/"
	return []string{d + "type=1\n", d + "address=" + addr + "\n", d + "device->../../../devices/pci0000:00/x"}
}

func TestRead(t *testing.T) {
	dmi := []string{
		"sys/class/dmi/id/product_uuid=4C4C4544-0042-3510-8052-B3C04F4E4D32\n",
		"sys/class/dmi/id/product_serial=CZ1234 XY\n",
	}
	tests := []struct {
		name               string
		entries            []string
		uuid, serial, mac  string // "" = no value
		uuidErr, serialErr string // in the error when no value
		macErr             string
	}{
		{"a PC", concat(dmi, wired("enp3s0", "52:54:00:AB:CD:EF")),
			"4c4c4544-0042-3510-8052-b3c04f4e4d32", "CZ1234_XY", "52-54-00-ab-cd-ef", "", "", ""},
		{"OEM junk is kept, made safe", concat([]string{
			"sys/class/dmi/id/product_uuid=03000200-0400-0500-0006-000700080009\n",
			"sys/class/dmi/id/product_serial=To Be Filled By O.E.M.\n"}, wired("eth0", "00:11:22:33:44:55")),
			"03000200-0400-0500-0006-000700080009", "To_Be_Filled_By_O.E.M.", "00-11-22-33-44-55", "", "", ""},
		{"a slash, dots and NUL in the serial", []string{"sys/class/dmi/id/product_uuid=x\n", "sys/class/dmi/id/product_serial=../a/b\x00c\n"},
			"x", "_._a_b_c", "", "", "", "no wired network interface"},
		{"all-zero UUID is SMBIOS's not set", []string{"sys/class/dmi/id/product_uuid=00000000-0000-0000-0000-000000000000\n", "sys/class/dmi/id/product_serial=S1\n"},
			"", "S1", "", "reserves", "", "no wired"},
		{"empty serial", []string{"sys/class/dmi/id/product_uuid=u\n", "sys/class/dmi/id/product_serial=   \n"},
			"u", "", "", "", "product_serial is empty", "no wired"},
		{"no DMI: the device tree's serial number", concat([]string{"proc/device-tree/serial-number=10000000ABCDEF01\x00"}, wired("end0", "dc:a6:32:01:02:03")),
			"10000000abcdef01", "10000000ABCDEF01", "dc-a6-32-01-02-03", "", "", ""},
		{"no DMI, device tree under /sys/firmware", []string{"sys/firmware/devicetree/base/serial-number=SN9\x00"},
			"sn9", "SN9", "", "", "", "no wired"},
		{"no DMI, no device tree", []string{"sys/class/net/"},
			"", "", "", "no device-tree serial-number", "no device-tree serial-number", "no wired"},
		// Boards whose firmware writes an SMBIOS table (U-Boot's EFI) but
		// leaves fields out or blank: the device tree fills each gap.
		{"DMI without product_uuid, device tree", []string{"sys/class/dmi/id/product_serial=S7\n", "proc/device-tree/serial-number=ABC123\x00"},
			"abc123", "S7", "", "", "", "no wired"},
		{"DMI UUID reserved, device tree", []string{"sys/class/dmi/id/product_uuid=FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\n",
			"sys/class/dmi/id/product_serial=S7\n", "proc/device-tree/serial-number=ABC123\x00"},
			"abc123", "S7", "", "", "", "no wired"},
		{"DMI serial blank, device tree", []string{"sys/class/dmi/id/product_uuid=u1\n", "sys/class/dmi/id/product_serial= \n",
			"sys/firmware/devicetree/base/serial-number=ABC123\x00"},
			"u1", "ABC123", "", "", "", "no wired"},
		{"DMI unreadable is not a missing value", []string{"sys/class/dmi/id/product_uuid/", "sys/class/dmi/id/product_serial=S7\n",
			"proc/device-tree/serial-number=ABC123\x00"},
			"", "S7", "", "DMI product_uuid: read", "", "no wired"},
		{"device tree serial of zeros is none", []string{"proc/device-tree/serial-number=0000000000000000\x00"},
			"", "", "", "0000000000000000, which says the board has none", "no DMI product_serial, and device tree serial-number is 0000000000000000", "no wired"},
		{"device tree serial blank", []string{"proc/device-tree/serial-number=\x00"},
			"", "", "", "device tree serial-number is empty", "no DMI product_serial, and device tree serial-number is empty", "no wired"},
		{"the first wired interface by name; lo, wireless, virtual and non-Ethernet skipped", concat(dmi,
			[]string{"sys/class/net/lo/type=772\n", "sys/class/net/lo/address=00:00:00:00:00:00\n"},
			wired("wlan0", "aa:aa:aa:aa:aa:aa"), []string{"sys/class/net/wlan0/wireless/"},
			wired("wlp2s0", "bb:bb:bb:bb:bb:bb"), []string{"sys/class/net/wlp2s0/phy80211->x"},
			[]string{"sys/class/net/br0/type=1\n", "sys/class/net/br0/address=cc:cc:cc:cc:cc:cc\n"},
			[]string{"sys/class/net/a-ib0/type=32\n", "sys/class/net/a-ib0/address=dd\n", "sys/class/net/a-ib0/device->x"},
			wired("eth1", "ee:ee:ee:ee:ee:02"), wired("eth0", "ee:ee:ee:ee:ee:01")),
			"4c4c4544-0042-3510-8052-b3c04f4e4d32", "CZ1234_XY", "ee-ee-ee-ee-ee-01", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fakeSys(t, tt.entries...).Read()
			check := func(what string, v Value, want, wantErr string) {
				t.Helper()
				if v.Text != want {
					t.Errorf("%s = %q (%v), want %q", what, v.Text, v.Err, want)
				}
				if want == "" && (v.Err == nil || !strings.Contains(v.Err.Error(), wantErr)) {
					t.Errorf("%s: error %v, want one containing %q", what, v.Err, wantErr)
				}
				if want != "" && v.Err != nil {
					t.Errorf("%s: value %q and error %v", what, v.Text, v.Err)
				}
			}
			check("%u", id.UUID, tt.uuid, tt.uuidErr)
			check("%s", id.Serial, tt.serial, tt.serialErr)
			check("%m", id.MAC, tt.mac, tt.macErr)
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestIdentityString(t *testing.T) {
	id := fakeSys(t, concat([]string{"sys/class/dmi/id/product_uuid=ABC\n"}, wired("eth0", "02:00:00:00:00:01"))...).Read()
	s := id.String()
	for _, want := range []string{"%u=abc (DMI product_uuid)", "%s=? (no DMI product_serial", "%m=02-00-00-00-00-01 (eth0)"} {
		if !strings.Contains(s, want) {
			t.Errorf("Identity.String() = %q, lacks %q", s, want)
		}
	}
}

func TestExpand(t *testing.T) {
	id := Identity{UUID: Value{Text: "4c4c"}, Serial: Value{Text: "SN_1"}, MAC: Value{Text: "52-54-00-00-00-01"}}
	noSerial := id
	noSerial.Serial = Value{Err: errors.New("no DMI product_serial")}
	tests := []struct {
		tmpl string
		id   Identity
		want string
		err  string
	}{
		{"fleet/common", id, "fleet/common", ""},
		{"fleet/machines/%u", id, "fleet/machines/4c4c", ""},
		{"by-serial/%s", id, "by-serial/SN_1", ""},
		{"mac/%m/etc", id, "mac/52-54-00-00-00-01/etc", ""},
		{"m-%u-%s", id, "m-4c4c-SN_1", ""},
		{"100%%/x", id, "100%/x", ""},
		{"%%u", id, "%u", ""},
		{"by-serial/%s", noSerial, "", "%s has no value: no DMI product_serial"},
		{"by-serial/%s", Unknown(), "", "%s has no value: this boot reads no machine identity"},
		{"x/%q", id, "", "unknown placeholder %q"},
		{"x/%U", id, "", "unknown placeholder %U"},
		{"x/%", id, "", `lone "%"`},
	}
	for _, tt := range tests {
		got, err := Expand(tt.tmpl, tt.id)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.tmpl, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Expand(%q) = %q, %v; want an error containing %q", tt.tmpl, got, err, tt.err)
		}
		var me *MissingError
		if tt.err != "" && strings.Contains(tt.err, "no value") != errors.As(err, &me) {
			t.Errorf("Expand(%q): %v, a *MissingError only for a value the machine lacks", tt.tmpl, err)
		}
	}
}

// TestPlaceholders: the table of letters is what Expand and Check accept,
// and nothing else.
func TestPlaceholders(t *testing.T) {
	known := map[byte]bool{}
	for _, p := range Placeholders {
		known[p.Letter] = true
	}
	for c := byte(0x21); c < 0x7f; c++ {
		err := Check("a/%" + string(c))
		if known[c] != (err == nil) {
			t.Errorf("Check(%%%c) = %v, want known=%v", c, err, known[c])
		}
	}
	for _, tt := range []struct {
		tmpl string
		want bool
	}{{"a/b", false}, {"a/%u", true}, {"a/%%", false}, {"%%%m", true}} {
		if got := HasPlaceholders(tt.tmpl); got != tt.want {
			t.Errorf("HasPlaceholders(%q) = %v, want %v", tt.tmpl, got, tt.want)
		}
	}
}

func TestSanitize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"ABC-123_x.y", "ABC-123_x.y"},
		{"To Be Filled By O.E.M.", "To_Be_Filled_By_O.E.M."},
		{"..", "_."},
		{".hidden", "_hidden"},
		{"a/b", "a_b"},
		{"a\x00b", "a_b"},
		{"naïve", "na_ve"},
		{strings.Repeat("x", 100), strings.Repeat("x", 64)},
	} {
		if got := Sanitize(tt.in); got != tt.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
