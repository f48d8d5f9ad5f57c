// Package resume is dockroot-init's hibernation guard.
//
// A hibernated system's memory image on the swap device refers to the
// filesystems exactly as they were when it hibernated. If the init replaced
// the rw layer with a fresh snapshot and the image were resumed later (this
// boot, or a later one without noresume), the resumed kernel would write
// through its cached metadata into a different filesystem tree and corrupt
// it. NixOS impermanence lost roots this way. So when the resume device
// holds a hibernation image, the init must first give the kernel the chance
// to resume it and otherwise mount the existing layer as it is.
//
// The rule is the pure function Decide, table-tested; Prober gathers its
// inputs (the cmdline's resume= and noresume, /sys/power/resume, the
// device's swap signature) and asks the kernel to resume. The boot sequence
// (package hook) calls Prober.Check before creating the rw layer.
//
// It imports only config and internal/blockdev, and must not import the
// boot (hook) or the host tool's packages.
package resume

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dockroot/dockroot/config"
	"github.com/dockroot/dockroot/internal/blockdev"
	"golang.org/x/sys/unix"
)

// Facts are what Decide needs; Prober.Facts gathers them.
type Facts struct {
	Resume   string // resume= as given on the cmdline; "" if absent
	NoResume bool   // noresume
	// Kernel is /sys/power/resume: the "major:minor" the kernel will resume
	// from, "0:0" or "" when none is set (or no CONFIG_HIBERNATION).
	Kernel string
	// Device is the device node probed: resume='s, else the kernel's
	// (unless noresume). "" when there was none to probe.
	Device string
	// Named is how the device was named ("resume=UUID=…", "/sys/power/resume 8:2").
	Named string
	// FindErr: the named device was not found.
	FindErr error
	// Offset is where the swap area starts on Device, in pages: a swap
	// file's resume_offset= (else the kernel's /sys/power/resume_offset);
	// 0 for a swap partition.
	Offset int64
	// Hibernated and Signature are blockdev.HibernationSignatureAt's answer;
	// ProbeErr is its error.
	Hibernated bool
	Signature  string
	ProbeErr   error
}

// Verdict is what the boot does about hibernation.
type Verdict struct {
	// KeepLayer: mount the existing rw layer as it is; do not recreate it.
	// (With no existing layer there is nothing a resume could refer to, and
	// the boot creates one as usual.)
	KeepLayer bool
	// TryResume: ask the kernel to resume from Device first (Prober.Resume);
	// if it resumes, the init never continues.
	TryResume bool
	Device    string
	Offset    int64  // Facts.Offset, for Resume
	Reason    string // one console line
}

// kernelSet reports whether /sys/power/resume names a device.
func kernelSet(k string) bool {
	k = strings.TrimSpace(k)
	return k != "" && k != "0:0"
}

// Decide is the guard's rule:
//
//   - Nothing to probe (no resume=, and noresume or no kernel resume
//     device): recreate the layer.
//   - The device holds no hibernation image: recreate.
//   - It holds one: keep the layer; and unless noresume, try to resume
//     first. noresume keeps the layer too: it only stops this boot from
//     resuming, the image stays on the device, and a later boot without
//     noresume would resume it onto a replaced layer.
//   - The device named cannot be found or read: keep the layer. Whether an
//     image exists is unknown, and losing the hibernated session's
//     filesystem is worse than one boot that is not fresh; the reason says
//     how to fix resume=.
func Decide(f Facts) Verdict {
	v := Verdict{Device: f.Device, Offset: f.Offset}
	switch {
	case f.Resume == "" && (f.NoResume || !kernelSet(f.Kernel)):
		v.Reason = "no resume device (no resume=, and the kernel reports none): the rw layer is recreated"
		if f.NoResume && kernelSet(f.Kernel) {
			v.Reason = "noresume: the kernel's resume device " + strings.TrimSpace(f.Kernel) + " is not checked; the rw layer is recreated"
		}
	case f.FindErr != nil:
		v.KeepLayer = true
		v.Reason = fmt.Sprintf("%s: the device was not found (%v), so dockroot cannot tell whether it holds a hibernation image; "+
			"the existing rw layer is kept as it is. Fix resume= (or remove it, or add noresume only if you never hibernate) to get a fresh layer again",
			f.Named, f.FindErr)
	case f.ProbeErr != nil:
		v.KeepLayer = true
		v.Reason = fmt.Sprintf("%s: %s could not be read (%v), so dockroot cannot tell whether it holds a hibernation image; "+
			"the existing rw layer is kept as it is", f.Named, f.Device, f.ProbeErr)
	case !f.Hibernated:
		v.Reason = fmt.Sprintf("%s: %s holds no hibernation image; the rw layer is recreated", f.Named, f.Device)
	case f.NoResume:
		v.KeepLayer = true
		v.Reason = fmt.Sprintf("%s: %s holds a hibernation image (%s) and noresume is set: not resuming, and the existing rw layer "+
			"is mounted as it is, not recreated, so the image still matches it. Boot without noresume to resume it, "+
			"or discard it (swapon %s in the booted system) to get a fresh layer again",
			f.Named, f.Device, f.Signature, f.Device)
	default:
		v.KeepLayer, v.TryResume = true, true
		v.Reason = fmt.Sprintf("%s: %s holds a hibernation image (%s): resuming it; if the kernel does not, the existing rw layer "+
			"is mounted as it is, not recreated", f.Named, f.Device, f.Signature)
	}
	return v
}

// Prober gathers Facts from a running system. Paths are fields so tests
// can point them at files.
type Prober struct {
	SysPowerResume       string // normally /sys/power/resume
	SysPowerResumeOffset string // normally /sys/power/resume_offset
	PageSize             int64  // the unit of resume_offset; 0 is the kernel's page size
	// Find resolves a resume=-style device name (LABEL=, UUID=, PARTUUID=,
	// PARTLABEL=, /dev/…, major:minor) to its node.
	Find func(spec string) (string, error)
	// Signature is blockdev.HibernationSignatureAt: offset is in bytes.
	Signature func(path string, offset int64) (bool, string, error)
}

// NewProber returns a Prober of the running system that finds devices with
// one blockdev scan (no waiting: by the time the guard runs, the root
// device has appeared, and a missing resume device keeps the layer).
func NewProber(log func(format string, args ...any)) *Prober {
	sc := blockdev.NewScanner(log)
	return &Prober{
		SysPowerResume:       "/sys/power/resume",
		SysPowerResumeOffset: "/sys/power/resume_offset",
		Find: func(s string) (string, error) {
			spec, err := config.ParseDeviceSpec(s)
			if err != nil {
				return "", err
			}
			d, err := sc.Resolve(spec)
			if err != nil {
				return "", err
			}
			return d.Path, nil
		},
		Signature: blockdev.HibernationSignatureAt,
	}
}

// Facts reads /sys/power/resume, finds the device to probe and probes it
// where the swap area starts: offset pages in (resume_offset=), or where
// /sys/power/resume_offset says when offset is 0.
func (p *Prober) Facts(resume string, offset int64, noresume bool) Facts {
	f := Facts{Resume: strings.TrimSpace(resume), NoResume: noresume, Offset: offset}
	from := "resume_offset="
	if f.Offset == 0 && p.SysPowerResumeOffset != "" {
		if b, err := os.ReadFile(p.SysPowerResumeOffset); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
				f.Offset, from = n, p.SysPowerResumeOffset
			}
		}
	}
	if b, err := os.ReadFile(p.SysPowerResume); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	}
	var spec string
	switch {
	case f.Resume != "":
		spec, f.Named = f.Resume, "resume="+f.Resume
	case !noresume && kernelSet(f.Kernel):
		spec, f.Named = f.Kernel, "the kernel's resume device "+f.Kernel
	default:
		return f
	}
	if f.Offset > 0 {
		f.Named += fmt.Sprintf(" at page offset %d (%s)", f.Offset, from)
	}
	f.Device, f.FindErr = p.Find(spec)
	if f.FindErr != nil {
		return f
	}
	f.Hibernated, f.Signature, f.ProbeErr = p.Signature(f.Device, f.Offset*p.pageSize())
	return f
}

func (p *Prober) pageSize() int64 {
	if p.PageSize > 0 {
		return p.PageSize
	}
	return int64(os.Getpagesize())
}

// Check is Decide(p.Facts(resume, offset, noresume)).
func (p *Prober) Check(resume string, offset int64, noresume bool) Verdict {
	return Decide(p.Facts(resume, offset, noresume))
}

// Resume asks the kernel to resume from the hibernation image on dev, as
// the initramfs resume hooks of mkinitcpio and dracut do: writing the
// device's "major:minor" to /sys/power/resume makes the kernel check the
// device and, if it holds an image, restore it — this call then never
// returns. It returns nil when the kernel found nothing to resume, and an
// error when it refused (for example an image from another kernel). For a
// swap file, offset (pages) goes to /sys/power/resume_offset first, as the
// kernel reads it when the device is written.
func (p *Prober) Resume(dev string, offset int64) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return fmt.Errorf("resume from %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("resume from %s: not a block device", dev)
	}
	if offset > 0 {
		if err := os.WriteFile(p.SysPowerResumeOffset, []byte(strconv.FormatInt(offset, 10)+"\n"), 0); err != nil {
			return fmt.Errorf("resume from %s at page offset %d: %w", dev, offset, err)
		}
	}
	num := fmt.Sprintf("%d:%d\n", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	f, err := os.OpenFile(p.SysPowerResume, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resume from %s: %s does not exist: this kernel has no hibernation support (CONFIG_HIBERNATION)", dev, p.SysPowerResume)
	}
	if err != nil {
		return fmt.Errorf("resume from %s: %w", dev, err)
	}
	defer f.Close()
	if _, err := f.WriteString(num); err != nil {
		return fmt.Errorf("resume from %s: write %q to %s: %w", dev, strings.TrimSpace(num), p.SysPowerResume, err)
	}
	return nil
}
