package config

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
)

// OnFail is what dockroot-init does when the boot fails (dockroot.onfail=).
type OnFail string

// The dockroot.onfail= policies.
const (
	OnFailShell    OnFail = "shell"    // a shell if the initramfs has one, else a message and a wait
	OnFailReboot   OnFail = "reboot"   // reboot the machine
	OnFailHalt     OnFail = "halt"     // power off
	OnFailPrevious OnFail = "previous" // boot the newest previous rw layer
)

// OnFails lists the accepted dockroot.onfail= values.
var OnFails = []OnFail{OnFailShell, OnFailReboot, OnFailHalt, OnFailPrevious}

// LayerMode is which rw layer the boot mounts (dockroot.layer=).
type LayerMode string

// The dockroot.layer= values.
const (
	// LayerNew makes NAME a fresh snapshot of the image (the default).
	LayerNew LayerMode = "new"
	// LayerPrevious mounts NAME.prev.1 as it was left: the layer the boot
	// before the last one made. The boot menu's previous-layer entry.
	LayerPrevious LayerMode = "previous"
	// LayerCurrent mounts NAME as it was left: the layer the last boot
	// used, with its changes.
	LayerCurrent LayerMode = "current"
)

// LayerModes lists the accepted dockroot.layer= values.
var LayerModes = []LayerMode{LayerNew, LayerPrevious, LayerCurrent}

// Where a value came from, as recorded in Config.Sources.
const (
	SourceCmdline = "cmdline"
	SourceDefault = "default"
)

// Files are the config files Load reads, as absolute paths in the
// initramfs. A missing file is fine; an empty path skips the file.
type Files struct {
	DockrootJSON    string // dockroot's own file, baked by `dockroot initramfs --config`
	DockerBtrfsJSON string // the ancestor's {"docker_image": ..., "docker_tag": ...}
}

// DefaultFiles are where the initramfs builder puts the config files.
var DefaultFiles = Files{
	DockrootJSON:    "/" + layout.DockrootJSON,
	DockerBtrfsJSON: "/" + layout.DockerBtrfsJSON,
}

// Config is dockroot's whole configuration, merged from the kernel command
// line, the config files and the defaults.
type Config struct {
	// Root is root= as given; RootDevice is it parsed. The device holds the
	// btrfs filesystem with the Docker data root and the rw layers.
	Root       string
	RootDevice DeviceSpec
	RootFSType string // rootfstype=, default "btrfs" (the only one that works)

	// Subvol is rootflags' subvol=: the rw layer's path from the btrfs top
	// level, cleaned, without a leading '/'.
	Subvol string
	// RootFlags are the other rootflags= options (subvol= and subvolid=
	// removed), for the final mount of the new root.
	RootFlags    []string
	subvolGiven  bool   // rootflags had a subvol=, possibly empty
	rootFlagsRaw string // rootflags as given, for messages

	// ReadOnly mounts the new root read-only. As in the kernel, that is the
	// default when neither ro nor rw is given; the last of them wins.
	ReadOnly bool

	// Init is the program to exec in the new root (init=, default
	// /sbin/init). When Sources["init"] is "default" the kernel would also
	// try /etc/init, /bin/init and /bin/sh; a caller may do the same.
	Init string
	// InitArgs are the arguments after "--". dockroot-init as PID 1
	// receives the kernel's full init argv (which also carries bare
	// parameters the kernel did not know, such as "single") in os.Args
	// and should prefer that; InitArgs serves the hook mode and logs.
	InitArgs []string

	// DockerPath is the Docker data root relative to the btrfs top level
	// (docker_path=, default var/lib/docker), cleaned; "." when the
	// filesystem itself is mounted at /var/lib/docker.
	DockerPath string
	// PodmanPath is rootful Podman's graph root relative to the btrfs top
	// level (podman_path=); dockroot.store=auto looks there too.
	PodmanPath string
	// ContainerdPath is a system containerd's root relative to the btrfs
	// top level (containerd_path=); dockroot.store=auto and containerd
	// look there and in Docker's own managed containerd under DockerPath.
	ContainerdPath string

	// Toplayer is the device holding the per-machine top layer (toplayer=,
	// default: Root); ToplayerDevice is it parsed.
	Toplayer       string
	ToplayerDevice DeviceSpec
	// ToplayerFSType is toplayerfstype=. It defaults to RootFSType when the
	// top layer is on the root device, else "" (detect from the superblock).
	ToplayerFSType string
	ToplayerFlags  []string // toplayerflags=, comma separated mount options
	// ToplayerPath is the top layer's directory on that device, relative to
	// its top level (toplayer_path=), cleaned. Empty: no top layer.
	ToplayerPath string
	// ToplayerPaths are its elements, in order, each cleaned, with their
	// placeholders (%u, %s, %m, %%) for the boot to expand. nil: no top layer.
	ToplayerPaths []string
	// ToplayerRequired is dockroot.toplayer_required=: an element whose
	// directory is missing fails the boot instead of being skipped.
	ToplayerRequired bool

	// Image is the image reference to boot (docker_image=, or the config
	// files; docker-btrfs.json's docker_image:docker_tag).
	Image string

	Keep    int           // dockroot.keep=: previous rw layers kept, default 1
	Cache   bool          // dockroot.cache=: keep a prepared base (image + top layer) for the next boot, default on
	Adopt   bool          // dockroot.adopt=: adopt the ancestor hook's NAME (a snapshot of the image's top layer), default on
	OnFail  OnFail        // dockroot.onfail=, default shell
	Timeout time.Duration // dockroot.timeout=: how long to wait for devices, default 30s
	Store   string        // dockroot.store=: auto | graphdriver, default auto
	Debug   bool          // dockroot.debug
	Tries   int           // dockroot.tries=: boots of a new image before falling back to the last good one, default 3

	// Layer is dockroot.layer=: a fresh layer (the default), or an existing
	// one booted as it was left, which needs no image.
	Layer LayerMode

	// RootWait is the kernel's rootwait: wait for the root device without
	// the dockroot.timeout= limit. RootWaitTimeout is rootwait=N (kernel
	// 6.5+), a limit of N seconds; 0 means no limit.
	RootWait        bool
	RootWaitTimeout time.Duration
	RootDelay       time.Duration // rootdelay=: sleep this long before looking for the root device

	Resume string // resume=: the hibernation device, for the hibernation guard
	// ResumeOffset is resume_offset=: the page where a swap file's header
	// lies on Resume; 0 for a swap partition (or to use the kernel's).
	ResumeOffset int
	NoResume     bool // noresume

	// Warnings are problems that do not stop the boot: unknown dockroot.*
	// keys, ignored rootflags, unknown config-file fields.
	Warnings []string
	// Sources maps each key (the command-line name: "root", "rootflags",
	// "rw", "dockroot.keep", "subvol", "init_args", ...) to where its value
	// came from: "cmdline", a config file's path, or "default".
	Sources map[string]string
}

// ToplayerOnRoot reports whether the top layer is on the root device, so
// the mounted btrfs top level can be reused instead of mounting it again.
func (c *Config) ToplayerOnRoot() bool { return sameDevice(c.Toplayer, c.Root) }

func sameDevice(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := ParseDeviceSpec(a)
	db, errB := ParseDeviceSpec(b)
	return errA == nil && errB == nil && da == db
}

// DeviceWait says how long to wait for the root and top-layer devices:
// rootwait without a value waits forever, rootwait=N waits N seconds, and
// otherwise dockroot.timeout= applies.
func (c *Config) DeviceWait() (d time.Duration, forever bool) {
	if c.RootWait {
		return c.RootWaitTimeout, c.RootWaitTimeout == 0
	}
	return c.Timeout, false
}

// Defaults returns the configuration before anything is read: the values
// an empty command line and no config files give.
func Defaults() *Config {
	c := &Config{Sources: map[string]string{}}
	for _, o := range options {
		if o.def == nil {
			continue
		}
		if err := o.set(c, *o.def); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", o.key, err)) // a bug in the option table; TestDefaults covers it
		}
		c.Sources[o.key] = SourceDefault
	}
	return c
}

// Load reads the configuration: the kernel command line cmdline (as read
// from /proc/cmdline), then DefaultFiles in fsys (rooted at / of the
// initramfs; nil for none). See LoadFiles.
func Load(cmdline string, fsys fs.FS) (*Config, error) {
	return LoadFiles(cmdline, fsys, DefaultFiles)
}

// LoadFiles merges, per key, the first of: the kernel command line, the
// dockroot.json file, the docker-btrfs.json file, the default; then
// validates the result.
//
// It always returns a Config, filled in as far as the input allows, even
// with an error: PID 1 needs dockroot.onfail= and dockroot.debug to decide
// what to do about the error. The error joins every problem found (a
// *QuoteError, file errors naming file and line, and *ValidationError
// values, see Problems), each a single line.
func LoadFiles(cmdline string, fsys fs.FS, files Files) (*Config, error) {
	var errs []error
	cl, err := ParseCmdline(cmdline)
	if err != nil {
		errs = append(errs, err)
	}
	var warnings []string
	layers := []*layer{fromCmdline(cl, &warnings)}
	if fsys != nil {
		for _, f := range []struct {
			name  string
			parse func(name string, data []byte) (*layer, error)
		}{
			{files.DockrootJSON, parseDockrootJSON},
			{files.DockerBtrfsJSON, parseDockerBtrfsJSON},
		} {
			l, err := readLayer(fsys, f.name, f.parse)
			if err != nil {
				errs = append(errs, err)
			}
			if l != nil {
				layers = append(layers, l)
				warnings = append(warnings, l.warnings...)
			}
		}
	}
	c, convErrs := build(layers)
	c.Warnings = append(warnings, c.Warnings...)
	for i, w := range c.Warnings {
		c.Warnings[i] = oneLine(w)
	}
	errs = append(errs, convErrs...)
	errs = append(errs, dropReported(c.Validate(), convErrs)...)
	c.normalize()
	return c, errors.Join(errs...)
}

// CheckFile checks a dockroot.json before the initramfs builder bakes it:
// its syntax, field types and values. Settings that may still come from the
// kernel command line at boot (root=, rootflags=, docker_image=) may be
// missing. It returns the warnings the file would cause at boot.
func CheckFile(name string, data []byte) (warnings []string, err error) {
	l, err := parseDockrootJSON(name, data)
	if err != nil {
		return nil, err
	}
	c, errs := build([]*layer{l})
	for _, p := range dropReported(c.Validate(), errs) {
		if !p.(*ValidationError).Missing {
			errs = append(errs, p)
		}
	}
	warnings = append(l.warnings, c.Warnings...)
	for i, w := range warnings {
		warnings[i] = oneLine(w)
	}
	return warnings, errors.Join(errs...)
}

// CheckDockerBtrfsFile checks the ancestor's docker-btrfs.json before the
// initramfs builder bakes it, with the parser dockroot-init uses at boot. It
// returns the warnings the file would cause at boot.
func CheckDockerBtrfsFile(name string, data []byte) (warnings []string, err error) {
	l, err := parseDockerBtrfsJSON(name, data)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, l.warnings...)
	for i, w := range warnings {
		warnings[i] = oneLine(w)
	}
	return warnings, nil
}

// dropReported returns the problems in err whose key has no conversion
// error already: "root needs a value" makes "root is not set" noise.
func dropReported(err error, conv []error) []error {
	reported := map[string]bool{}
	for _, e := range conv {
		if v, ok := e.(*ValidationError); ok {
			reported[v.Key] = true
		}
	}
	var out []error
	for _, p := range Problems(err) {
		if !reported[p.Key] {
			out = append(out, p)
		}
	}
	return out
}

// Problems flattens an error returned by Load, LoadFiles, CheckFile or
// Validate into its *ValidationError values, in order, so a caller can log
// one line per problem.
func Problems(err error) []*ValidationError {
	var out []*ValidationError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if v, ok := err.(*ValidationError); ok {
			out = append(out, v)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// setting is one key's raw value from one source, in the command line's
// form: JSON numbers arrive as their decimal text, JSON true as a bare key.
type setting struct {
	value  string
	bare   bool // "key" without '='
	source string
}

// layer is what one source says: key -> setting, plus init arguments.
type layer struct {
	source      string
	settings    map[string]setting
	initArgs    []string
	hasInitArgs bool
	warnings    []string
}

func fromCmdline(cl *Cmdline, warnings *[]string) *layer {
	l := &layer{source: SourceCmdline, settings: map[string]setting{}}
	for _, p := range cl.Params {
		s := setting{value: p.Value, bare: !p.HasValue, source: SourceCmdline}
		switch {
		case (p.Key == "ro" || p.Key == "rw") && p.HasValue:
			// readonly()/readwrite() in init/do_mounts.c refuse a value,
			// so the kernel passes "ro=x" on to init; so do we.
			*warnings = append(*warnings, fmt.Sprintf("%s=%s ignored: the kernel only knows a bare %s", p.Key, p.Value, p.Key))
		case p.Key == "ro":
			l.settings["rw"] = setting{value: "0", source: SourceCmdline}
		case p.Key == "rw":
			l.settings["rw"] = setting{bare: true, source: SourceCmdline}
		case optionByKey(p.Key) != nil:
			l.settings[p.Key] = s
		case strings.HasPrefix(p.Key, "dockroot."):
			*warnings = append(*warnings, unknownKeyWarning(p))
		}
	}
	if cl.InitArgs != nil {
		l.initArgs, l.hasInitArgs = cl.InitArgs, true
	}
	return l
}

func unknownKeyWarning(p Param) string {
	var known []string
	for _, o := range options {
		if strings.HasPrefix(o.key, "dockroot.") {
			known = append(known, o.key)
		}
	}
	msg := fmt.Sprintf("unknown parameter %s ignored", p.String())
	if best := closest(p.Key, known); best != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", best)
	}
	return msg + "; known: " + strings.Join(known, ", ")
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99 // not a typo of a short key; keeps the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// build starts from the defaults and applies, per key, the setting of the
// first layer that has one. A value that cannot be converted (keep=abc)
// becomes a *ValidationError and the default stays.
func build(layers []*layer) (*Config, []error) {
	c := Defaults()
	var errs []error
	for _, o := range options {
		for _, l := range layers {
			s, ok := l.settings[o.key]
			if !ok {
				continue
			}
			if err := o.set(c, s); err != nil {
				errs = append(errs, o.problem(s, err))
			} else {
				c.Sources[o.key] = s.source
			}
			break
		}
	}
	for _, l := range layers {
		if l.hasInitArgs {
			c.InitArgs = slices.Clone(l.initArgs)
			c.Sources["init_args"] = l.source
			break
		}
	}
	c.Sources["subvol"] = c.Sources["rootflags"]
	if _, set := c.Sources["toplayer"]; !set {
		c.Toplayer = c.Root
		c.Sources["toplayer"] = SourceDefault + " (root=)"
	}
	if _, set := c.Sources["toplayerfstype"]; !set && c.Toplayer == c.Root {
		c.ToplayerFSType = c.RootFSType
		c.Sources["toplayerfstype"] = SourceDefault + " (rootfstype=)"
	}
	if d, err := ParseDeviceSpec(c.Root); err == nil {
		c.RootDevice = d
	}
	if d, err := ParseDeviceSpec(c.Toplayer); err == nil {
		c.ToplayerDevice = d
	}
	if c.Sources["toplayer"] != SourceDefault+" (root=)" && c.ToplayerPath == "" {
		c.Warnings = append(c.Warnings, fmt.Sprintf("toplayer=%s is set but toplayer_path= is empty, so no top layer will be applied; set toplayer_path=DIR", c.Toplayer))
	}
	return c, errs
}

// normalize cleans the paths that Validate accepted, so callers can join
// them onto a mount point directly. Invalid ones are left as given: the
// caller has the error.
func (c *Config) normalize() {
	if v, err := cleanRel(c.Subvol); err == nil && v != "." {
		c.Subvol = v
	}
	if v, err := cleanRel(c.DockerPath); err == nil && c.DockerPath != "" && !strings.HasPrefix(c.DockerPath, "/") {
		c.DockerPath = v
	}
	if v, err := cleanRel(c.PodmanPath); err == nil && c.PodmanPath != "" && !strings.HasPrefix(c.PodmanPath, "/") {
		c.PodmanPath = v
	}
	if v, err := cleanRel(c.ContainerdPath); err == nil && c.ContainerdPath != "" && !strings.HasPrefix(c.ContainerdPath, "/") {
		c.ContainerdPath = v
	}
	elems := c.toplayerElems()
	for i, e := range elems {
		if v, err := cleanRel(e); err == nil && e != "" {
			elems[i] = v
		}
	}
	c.ToplayerPaths = elems
	if elems != nil {
		c.ToplayerPath = strings.Join(elems, ",")
	}
}

// toplayerElems returns the elements of toplayer_path=, also for a Config
// built in code with only ToplayerPath set.
func (c *Config) toplayerElems() []string {
	if c.ToplayerPaths != nil {
		return slices.Clone(c.ToplayerPaths)
	}
	return splitList(c.ToplayerPath)
}

// splitList splits toplayer_path= at its commas; "" is no element at all,
// but every other empty element is kept, for Validate to refuse.
func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}
