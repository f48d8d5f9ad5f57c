package blockdev

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/config"
)

// Matches reports whether d is the device spec names. PARTNROFF is applied
// by Find, which sees the sibling partitions.
func (d Device) Matches(spec config.DeviceSpec) bool {
	switch spec.Kind {
	case config.DeviceLabel:
		return d.Label != "" && d.Label == spec.Value
	case config.DeviceUUID:
		return d.UUID != "" && strings.EqualFold(d.UUID, spec.Value)
	case config.DevicePartUUID:
		return d.PartUUID != "" && strings.EqualFold(d.PartUUID, spec.Value)
	case config.DevicePartLabel:
		return d.PartLabel != "" && d.PartLabel == spec.Value
	case config.DeviceNumber:
		return spec.Value == fmt.Sprintf("%d:%d", d.Major, d.Minor)
	case config.DevicePath:
		// The kernel's root=/dev/NAME looks NAME up among block devices,
		// not in the filesystem.
		if name, ok := strings.CutPrefix(spec.Value, "/dev/"); ok && (name == d.Name || hasNodeName(d.Path, name)) {
			return true
		}
		return spec.Value == d.Path
	}
	return false
}

// hasNodeName reports whether a device node path ends in /name (the DEVNAME
// devtmpfs uses, which can differ from the sysfs name).
func hasNodeName(path, name string) bool {
	return strings.HasSuffix(path, "/"+name)
}

// Find returns the device among devs that spec names. When several match
// (two disks with the same label, or every member of a multi-device btrfs
// for UUID=), the first by name wins and warn, if set, is told about the
// rest: mounting the wrong one of two look-alike disks is a real hazard.
func Find(devs []Device, spec config.DeviceSpec, warn func(format string, args ...any)) (Device, bool) {
	var hits []Device
	for _, d := range devs {
		if d.Matches(spec) {
			hits = append(hits, d)
		}
	}
	if len(hits) == 0 {
		return Device{}, false
	}
	hit := hits[0]
	if spec.Kind == config.DevicePartUUID && spec.PartNrOff != 0 {
		want := hit.PartN + spec.PartNrOff
		for _, d := range devs {
			if d.Parent != "" && d.Parent == hit.Parent && d.PartN == want {
				return d, true
			}
		}
		return Device{}, false
	}
	if len(hits) > 1 && warn != nil {
		names := make([]string, len(hits))
		for i, h := range hits {
			names[i] = h.Path
		}
		warn("%s matches %d devices (%s); using %s", spec, len(hits), strings.Join(names, ", "), hit.Path)
	}
	return hit, true
}

// Resolve scans once and returns the device spec names, or a
// *NotFoundError that lists what was found.
func (s *Scanner) Resolve(spec config.DeviceSpec) (Device, error) {
	devs, err := s.List()
	if err != nil {
		return Device{}, err
	}
	if spec.Kind == config.DevicePath {
		// A node that exists (a plain path the scan did not list, or a
		// symlink) is matched by device number.
		if d, ok := matchNode(devs, spec.Value); ok {
			return d, nil
		}
	}
	if d, ok := Find(devs, spec, s.Log); ok {
		return d, nil
	}
	return Device{}, &NotFoundError{Spec: spec, Devices: devs}
}

func matchNode(devs []Device, path string) (Device, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Device{}, false
	}
	for _, d := range devs {
		if uint64(st.Rdev) == unix.Mkdev(d.Major, d.Minor) {
			return d, true
		}
	}
	return Device{}, false
}

// DefaultTimeout is how long Wait looks for a device when neither
// dockroot.timeout= nor rootwait is given.
const DefaultTimeout = 30 * time.Second

// WaitOptions carries root=-related kernel parameters into Wait.
type WaitOptions struct {
	What      string        // what is waited for, for messages: "root" (default) or "toplayer"
	Timeout   time.Duration // dockroot.timeout=; 0 means not given
	RootWait  bool          // rootwait
	RootDelay time.Duration // rootdelay=
	Poll      time.Duration // rescan interval; default 200ms, or 1s with Wake
	// Wake, when set, signals that a block device may have appeared (the
	// init's uevent listener): each signal rescans at once, and polling
	// at Poll is only the fallback for a missed event.
	Wake     <-chan struct{}
	Progress time.Duration // interval of "still waiting" lines; default 10s
	Log      func(format string, args ...any)
}

// Limit is the rule for how long Wait looks, after rootdelay=:
//   - dockroot.timeout=D given: D, with or without rootwait;
//   - rootwait alone: forever (forever=true), as the kernel's rootwait,
//     with a progress line every 10 s so a missing disk is visible;
//   - neither: DefaultTimeout (30 s). The kernel itself gives up at once
//     without rootwait, but USB and NVMe disks often appear a few seconds
//     after the modules load, and failing there only drops to onfail.
func (o WaitOptions) Limit() (limit time.Duration, forever bool) {
	switch {
	case o.Timeout > 0:
		return o.Timeout, false
	case o.RootWait:
		return 0, true
	default:
		return DefaultTimeout, false
	}
}

func (o WaitOptions) what() string {
	if o.What == "" {
		return "root"
	}
	return o.What
}

// Wait sleeps rootdelay=, then rescans until spec appears, the limit from
// WaitOptions.Limit passes (a *NotFoundError listing every device found) or
// ctx ends.
func (s *Scanner) Wait(ctx context.Context, spec config.DeviceSpec, o WaitOptions) (Device, error) {
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	poll, progress := o.Poll, o.Progress
	if poll <= 0 {
		poll = 200 * time.Millisecond
		if o.Wake != nil {
			poll = time.Second
		}
	}
	if progress <= 0 {
		progress = 10 * time.Second
	}
	if o.RootDelay > 0 {
		logf("rootdelay: waiting %s before looking for %s=%s", o.RootDelay, o.what(), spec)
		if err := sleep(ctx, o.RootDelay); err != nil {
			return Device{}, fmt.Errorf("wait for %s device %s: %w", o.what(), spec, err)
		}
	}
	limit, forever := o.Limit()
	start := time.Now()
	nextProgress := start.Add(progress)
	announced := false
	for {
		d, err := s.Resolve(spec)
		if err == nil {
			if announced {
				logf("found %s device %s as %s after %s", o.what(), spec, d.Path, time.Since(start).Round(time.Millisecond))
			}
			return d, nil
		}
		nf, ok := err.(*NotFoundError)
		if !ok {
			return Device{}, fmt.Errorf("wait for %s device %s: %w", o.what(), spec, err)
		}
		nf.What = o.what()
		nf.Waited = time.Since(start)
		if !announced {
			if forever {
				logf("waiting for %s device %s (rootwait: until it appears)", o.what(), spec)
			} else {
				logf("waiting for %s device %s (up to %s)", o.what(), spec, limit)
			}
			announced = true
		}
		if !forever && nf.Waited >= limit {
			return Device{}, nf
		}
		if now := time.Now(); !now.Before(nextProgress) {
			logf("still waiting for %s device %s after %s; block devices so far: %s",
				o.what(), spec, nf.Waited.Round(time.Second), deviceNames(nf.Devices))
			nextProgress = now.Add(progress)
		}
		if err := sleepOrWake(ctx, poll, o.Wake); err != nil {
			nf.Cause = err
			return Device{}, nf
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sleepOrWake sleeps d, or until wake signals (a nil wake never does).
func sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-wake:
	}
	return nil
}

func deviceNames(devs []Device) string {
	if len(devs) == 0 {
		return "none"
	}
	names := make([]string, len(devs))
	for i, d := range devs {
		names[i] = d.Name
	}
	return strings.Join(names, " ")
}

// NotFoundError is a device that did not appear. Its message lists every
// block device that was found, blkid-style, and what to check.
type NotFoundError struct {
	What    string // "root", "toplayer"
	Spec    config.DeviceSpec
	Waited  time.Duration
	Devices []Device
	Cause   error // set when the wait was cut short (context cancelled)
}

func (e *NotFoundError) Unwrap() error { return e.Cause }

func (e *NotFoundError) Error() string {
	var b strings.Builder
	what := e.What
	if what == "" {
		what = "root"
	}
	fmt.Fprintf(&b, "%s device %s not found", what, e.Spec)
	if e.Waited > 0 {
		fmt.Fprintf(&b, " after %s", e.Waited.Round(time.Second))
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	if len(e.Devices) == 0 {
		b.WriteString("; no block devices at all.\n")
	} else {
		b.WriteString("; block devices found:\n")
		b.WriteString(FormatList(e.Devices))
	}
	for _, d := range unsplitDisks(e.Devices) {
		fmt.Fprintf(&b, "%s has a %s partition table but the kernel shows no partitions on it: "+
			"the kernel lacks %s, or the table is damaged.\n", d.Path, d.PTType, partitionConfig[d.PTType])
	}
	fmt.Fprintf(&b, "Check %s= on the kernel command line against this list. ", paramFor(what))
	b.WriteString("If the disk itself is missing, the initramfs probably lacks its storage driver: " +
		"rebuild it with `dockroot initramfs --module NAME` (e.g. nvme, ahci, virtio_blk, usb-storage, mmc_block).")
	return b.String()
}

// partitionConfig is the kernel option that parses each table type.
var partitionConfig = map[string]string{"gpt": "CONFIG_EFI_PARTITION", "dos": "CONFIG_MSDOS_PARTITION"}

// unsplitDisks returns the disks that carry a partition table the kernel
// did not split into partition devices.
func unsplitDisks(devs []Device) []Device {
	parents := map[string]bool{}
	for _, d := range devs {
		if d.Parent != "" {
			parents[d.Parent] = true
		}
	}
	var out []Device
	for _, d := range devs {
		if d.PTType != "" && !parents[d.Name] {
			out = append(out, d)
		}
	}
	return out
}

func paramFor(what string) string {
	if what == "toplayer" {
		return "toplayer"
	}
	return "root"
}

// String renders d like a line of `blkid` output, with its size.
func (d Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: SIZE=%q", d.Path, humanSize(d.Size))
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%q", k, v)
		}
	}
	field("TYPE", d.Type)
	field("LABEL", d.Label)
	field("UUID", d.UUID)
	field("PTTYPE", d.PTType)
	field("PTUUID", d.PTUUID)
	field("PARTUUID", d.PartUUID)
	field("PARTLABEL", d.PartLabel)
	field("HIBERNATION", d.Hibernation)
	if d.ReadOnly {
		b.WriteString(" RO")
	}
	if d.Size == 0 {
		b.WriteString(" (empty: no medium)")
	}
	if d.ProbeError != "" {
		fmt.Fprintf(&b, " (unreadable: %s)", d.ProbeError)
	}
	return b.String()
}

// FormatList renders devices one per line, indented, for error messages
// and `dockroot doctor`.
func FormatList(devs []Device) string {
	var b strings.Builder
	for _, d := range devs {
		b.WriteString("  ")
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[i])
}
