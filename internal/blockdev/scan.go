package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Device is one entry of /sys/class/block with what its metadata says.
type Device struct {
	Name      string // kernel name, e.g. "vda1" (sysfs spells '/' as '!')
	Path      string // device node, e.g. "/dev/vda1"
	Major     uint32
	Minor     uint32
	Size      int64 // bytes
	ReadOnly  bool
	Parent    string // whole disk of a partition, e.g. "vda"; "" for a disk
	PartN     int    // partition number (uevent PARTN); 0 for a whole disk
	Removable bool

	Superblock        // filesystem Type, Label, UUID, ... ("" if none recognised)
	PartUUID   string // from the parent's partition table
	PartLabel  string
	PTType     string // partition table on this whole disk: "gpt", "dos" or ""
	PTUUID     string

	// ProbeError says why the device could not be read (no medium,
	// permission, I/O error); the scan goes on without it.
	ProbeError string
}

// Scanner lists block devices from sysfs. The zero value is not usable;
// NewScanner gives the paths of a running system.
type Scanner struct {
	SysClassBlock string // normally /sys/class/block
	DevDir        string // normally /dev
	// MakeNodes creates a missing device node from the sysfs major:minor.
	// devtmpfs creates nodes itself, so this matters only when /dev is a
	// plain tmpfs or a node was deleted; it needs CAP_MKNOD.
	MakeNodes bool
	Log       func(format string, args ...any)
}

// NewScanner returns a scanner of the running system's /sys/class/block and
// /dev that creates missing nodes (what PID 1 wants).
func NewScanner(log func(format string, args ...any)) *Scanner {
	return &Scanner{SysClassBlock: "/sys/class/block", DevDir: "/dev", MakeNodes: true, Log: log}
}

func (s *Scanner) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log(format, args...)
	}
}

// List returns every block device, sorted by name, with its filesystem,
// partition-table and partition metadata. Devices that cannot be read are
// listed with ProbeError set; only an unreadable sysfs is an error.
func (s *Scanner) List() ([]Device, error) {
	entries, err := os.ReadDir(s.SysClassBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices in %s: %w (is sysfs mounted?)", s.SysClassBlock, err)
	}
	devs := make([]Device, 0, len(entries))
	for _, e := range entries {
		d, err := s.readSysfs(e.Name())
		if err != nil {
			// A device can vanish between ReadDir and here (a loop
			// device detached, a USB stick pulled): skip it.
			s.logf("skip block device %s: %v", e.Name(), err)
			continue
		}
		devs = append(devs, d)
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Name < devs[j].Name })

	tables := map[string]*PartitionTable{}
	for i := range devs {
		d := &devs[i]
		if d.Size == 0 {
			continue // no medium (empty CD drive, unbound loop device): nothing to read
		}
		if err := s.ensureNode(d); err != nil {
			d.ProbeError = err.Error()
			continue
		}
		if d.Parent == "" {
			// A disk with a partition table is probed for the table
			// only: a stale filesystem superblock in the gap before
			// the first partition must not answer LABEL= or UUID=.
			t, err := s.readTable(d)
			if err != nil {
				d.ProbeError = err.Error()
				continue
			}
			if t != nil {
				d.PTType, d.PTUUID = t.Type, t.UUID
				tables[d.Name] = t
				continue
			}
		}
		sb, err := ProbeFile(d.Path)
		if err != nil {
			d.ProbeError = err.Error()
			continue
		}
		d.Superblock = sb
	}
	for i := range devs {
		d := &devs[i]
		t := tables[d.Parent]
		if t == nil || d.PartN == 0 {
			continue
		}
		if p, ok := t.Lookup(d.PartN); ok {
			d.PartUUID, d.PartLabel = p.UUID, p.Name
		} else if t.Type == "dos" {
			// Logical partitions (5+) live in extended boot records this
			// package does not walk; their PARTUUID still follows the
			// "<signature>-<PARTN>" rule.
			d.PartUUID = fmt.Sprintf("%s-%02x", t.UUID, d.PartN)
		}
	}
	return devs, nil
}

func (s *Scanner) readTable(d *Device) (*PartitionTable, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadPartitionTable(f, d.Size)
	if err != nil {
		return nil, fmt.Errorf("read partition table of %s: %w", d.Path, err)
	}
	return t, nil
}

// readSysfs reads one /sys/class/block entry (kernel ABI documented in
// Documentation/ABI/stable/sysfs-block).
func (s *Scanner) readSysfs(name string) (Device, error) {
	dir := filepath.Join(s.SysClassBlock, name)
	d := Device{Name: strings.ReplaceAll(name, "!", "/")}
	uevent, err := readUevent(filepath.Join(dir, "uevent"))
	if err != nil {
		return d, err
	}
	dev, err := readAttr(dir, "dev")
	if err != nil {
		return d, err
	}
	maj, min, ok := strings.Cut(dev, ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return d, fmt.Errorf("%s/dev: want major:minor, got %q", dir, dev)
	}
	d.Major, d.Minor = uint32(ma), uint32(mi)
	if sectors, err := readAttr(dir, "size"); err == nil {
		// sysfs size is always in 512-byte units, whatever the
		// logical block size.
		n, _ := strconv.ParseInt(sectors, 10, 64)
		d.Size = n * 512
	}
	if ro, err := readAttr(dir, "ro"); err == nil {
		d.ReadOnly = ro == "1"
	}
	if rm, err := readAttr(dir, "removable"); err == nil {
		d.Removable = rm == "1"
	}
	devName := uevent["DEVNAME"]
	if devName == "" {
		devName = d.Name
	}
	d.Path = filepath.Join(s.DevDir, devName)
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		d.PartN, _ = strconv.Atoi(uevent["PARTN"])
		if d.PartN == 0 {
			p, _ := readAttr(dir, "partition")
			d.PartN, _ = strconv.Atoi(p)
		}
		// /sys/class/block/vda1 links to .../block/vda/vda1: the parent
		// directory is the whole disk.
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			d.Parent = strings.ReplaceAll(filepath.Base(filepath.Dir(real)), "!", "/")
		}
	}
	return d, nil
}

// ensureNode makes sure d.Path is there, creating it from major:minor when
// allowed.
func (s *Scanner) ensureNode(d *Device) error {
	if _, err := os.Stat(d.Path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", d.Path, err)
	}
	if !s.MakeNodes {
		return fmt.Errorf("device node %s (%d:%d) does not exist", d.Path, d.Major, d.Minor)
	}
	if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
		return fmt.Errorf("create directory for device node %s: %w", d.Path, err)
	}
	if err := unix.Mknod(d.Path, unix.S_IFBLK|0o600, int(unix.Mkdev(d.Major, d.Minor))); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mknod %s b %d %d: %w", d.Path, d.Major, d.Minor, err)
	}
	s.logf("created missing device node %s (%d:%d)", d.Path, d.Major, d.Minor)
	return nil
}

func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readUevent parses a sysfs uevent file: KEY=VALUE lines.
func readUevent(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}
