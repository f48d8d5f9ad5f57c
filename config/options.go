package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
)

// jsonType is a JSON value type a dockroot.json field accepts.
type jsonType int

const (
	jsonString jsonType = 1 << iota
	jsonInt
	jsonBool
	jsonStringList // an array of strings, joined with ',' as on the command line
)

// option is one row of the configuration table: one kernel parameter and
// its dockroot.json field.
type option struct {
	key     string   // kernel command-line name; also the Sources key
	json    string   // dockroot.json field name ("" = none)
	types   jsonType // JSON types the field accepts
	def     *setting // nil: no fixed default (see build)
	defDoc  string   // the default, for people
	want    string   // what a valid value looks like, for error messages
	example string   // a valid value, for the fix in error messages
	doc     string   // meaning, for the README table
	set     func(c *Config, s setting) error
}

func def(v string) *setting { return &setting{value: v, source: SourceDefault} }

// options is the whole configuration surface. Order matters only for the
// documentation table and the order errors are reported in.
var options = []option{
	{key: "root", json: "root", types: jsonString, def: def(""), defDoc: "(none; required)",
		want: "a device: LABEL=, UUID=, PARTUUID=, PARTLABEL=, /dev/NAME or major:minor", example: "LABEL=linux",
		doc: "the btrfs filesystem holding the Docker data root and the rw layers",
		set: setString(func(c *Config, v string) { c.Root = v })},
	{key: "rootfstype", json: "rootfstype", types: jsonString, def: def("btrfs"), defDoc: "btrfs",
		want: "btrfs", example: "btrfs",
		doc: "filesystem type of root=; dockroot needs btrfs",
		set: setString(func(c *Config, v string) { c.RootFSType = v })},
	{key: "rootflags", json: "rootflags", types: jsonString, def: def(""), defDoc: "(none; subvol= required)",
		want: "comma-separated mount options including subvol=NAME", example: "subvol=docker_rwlayer",
		doc: "must contain subvol=NAME, the rw layer's path from the btrfs top level, made fresh from the image at every boot; the other options are used for the final mount (subvolid= is dropped)",
		set: setString(setRootFlags)},
	{key: "rw", json: "rw", types: jsonBool, def: def("0"), defDoc: "ro (as the kernel)",
		want: "a bare ro or rw", example: "",
		doc: "`ro` / `rw`: mount the new root read-only or read-write; the last one wins. In JSON: \"rw\": true or false",
		set: func(c *Config, s setting) error {
			rw, err := parseFlag(s)
			c.ReadOnly = !rw
			return err
		}},
	{key: "init", json: "init", types: jsonString, def: def("/sbin/init"), defDoc: "/sbin/init",
		want: "an absolute path in the image", example: "/sbin/init",
		doc: "the program to run as PID 1 in the image; arguments after `--` are passed to it (JSON: \"init_args\": [...])",
		set: setString(func(c *Config, v string) { c.Init = v })},
	{key: "docker_path", json: "docker_path", types: jsonString, def: def(layout.DefaultDockerPath), defDoc: layout.DefaultDockerPath,
		want: "a path relative to the btrfs top level, without ..", example: layout.DefaultDockerPath,
		doc: "the Docker data root, relative to the btrfs top level; `.` when the filesystem is mounted at /var/lib/docker",
		set: setString(func(c *Config, v string) { c.DockerPath = v })},
	{key: "podman_path", json: "podman_path", types: jsonString, def: def(layout.DefaultPodmanPath), defDoc: layout.DefaultPodmanPath,
		want: "a path relative to the btrfs top level, without ..", example: layout.DefaultPodmanPath,
		doc: "rootful Podman's graph root (containers/storage with the btrfs driver), relative to the btrfs top level; looked in with dockroot.store=auto or podman",
		set: setString(func(c *Config, v string) { c.PodmanPath = v })},
	{key: "containerd_path", json: "containerd_path", types: jsonString, def: def(layout.DefaultContainerdPath), defDoc: layout.DefaultContainerdPath,
		want: "a path relative to the btrfs top level, without ..", example: layout.DefaultContainerdPath,
		doc: "a system containerd's root (Docker's containerd image store when dockerd runs with --containerd=), relative to the btrfs top level; the containerd dockerd manages itself, under docker_path=/" + layout.DockerContainerdDir + ", is looked in too; with dockroot.store=auto or containerd",
		set: setString(func(c *Config, v string) { c.ContainerdPath = v })},
	{key: "docker_image", json: "docker_image", types: jsonString, def: def(""), defDoc: "(none; required)",
		want: "an image reference", example: "debian:bookworm",
		doc: "the image to boot: name[:tag], name@sha256:..., or an image ID (prefix of at least 12 hex digits)",
		set: setString(func(c *Config, v string) { c.Image = v })},
	{key: "toplayer", json: "toplayer", types: jsonString, defDoc: "root=",
		want: "a device: LABEL=, UUID=, PARTUUID=, PARTLABEL=, /dev/NAME or major:minor", example: "LABEL=linux",
		doc: "the device holding the top layer (per-machine files copied over the image)",
		set: setString(func(c *Config, v string) { c.Toplayer = v })},
	{key: "toplayerfstype", json: "toplayerfstype", types: jsonString, defDoc: "rootfstype= if on the root device, else detected",
		want: "a filesystem type", example: "ext4",
		doc: "filesystem type of toplayer=",
		set: setString(func(c *Config, v string) { c.ToplayerFSType = v })},
	{key: "toplayerflags", json: "toplayerflags", types: jsonString, def: def(""), defDoc: "(none)",
		want: "comma-separated mount options", example: "noatime",
		doc: "mount options for toplayer= (it is mounted read-only)",
		set: setString(func(c *Config, v string) { c.ToplayerFlags = splitFlags(v) })},
	{key: "toplayer_path", json: "toplayer_path", types: jsonString | jsonStringList, def: def(""), defDoc: "(none: no top layer)",
		want: "comma-separated paths relative to the top of toplayer=, without .., with the placeholders %u, %s, %m and %% only", example: "boot_docker",
		doc: "the directories on toplayer= whose trees are copied over the new root, comma-separated, in order (a later one wins); `%u`, `%s`, `%m` expand to the machine's DMI product UUID, DMI serial (each, where DMI gives none, the device tree's serial number) and first wired MAC address (see docs/DESIGN.md, Machine identity), `%%` to `%`. A directory that does not exist is skipped with a log line naming the machine (unless dockroot.toplayer_required=1), except a single path without placeholders, which must exist as always. In JSON also a list of strings. Empty: no top layer",
		set: setString(func(c *Config, v string) { c.ToplayerPath, c.ToplayerPaths = v, splitList(v) })},
	{key: "dockroot.toplayer_required", json: "toplayer_required", types: jsonBool, def: def("0"), defDoc: "off",
		want: "0/1, no/yes or off/on", example: "1",
		doc: "fail the boot at the top-layer step, naming the machine's identity, when a directory of toplayer_path= does not exist, instead of skipping it",
		set: func(c *Config, s setting) (err error) { c.ToplayerRequired, err = parseFlag(s); return err }},
	{key: "rootwait", json: "rootwait", types: jsonBool | jsonInt, def: def("0"), defDoc: "off",
		want: "a bare rootwait, or rootwait=SECONDS", example: "",
		doc: "wait for the root device without the dockroot.timeout= limit; rootwait=N waits at most N seconds (as kernel 6.5+)",
		set: setRootWait},
	{key: "rootdelay", json: "rootdelay", types: jsonInt, def: def("0"), defDoc: "0",
		want: "a whole number of seconds >= 0", example: "5",
		doc: "seconds to sleep before looking for the root device",
		set: setSeconds(func(c *Config) *time.Duration { return &c.RootDelay })},
	{key: "resume", json: "resume", types: jsonString, def: def(""), defDoc: "(none)",
		want: "a swap device", example: "LABEL=swap",
		doc: "the hibernation device; when it holds a hibernation image the rw layer is kept as it is",
		set: setString(func(c *Config, v string) { c.Resume = v })},
	{key: "resume_offset", json: "resume_offset", types: jsonInt, def: def("0"), defDoc: "0",
		want: "a whole number of pages >= 0", example: "34816",
		doc: "where a swap file's header lies on resume= (pages, as `btrfs inspect-internal map-swapfile -r` prints it); the kernel's /sys/power/resume_offset when not given",
		set: setInt(func(c *Config) *int { return &c.ResumeOffset })},
	{key: "noresume", json: "noresume", types: jsonBool, def: def("0"), defDoc: "off",
		want: "a bare noresume", example: "",
		doc: "ignore any hibernation image",
		set: func(c *Config, s setting) (err error) { c.NoResume, err = parseFlag(s); return err }},
	{key: "dockroot.keep", json: "keep", types: jsonInt, def: def("1"), defDoc: "1",
		want: "a whole number >= 0", example: "1",
		doc: "previous rw layers kept as NAME.prev.1 ... NAME.prev.N",
		set: setInt(func(c *Config) *int { return &c.Keep })},
	{key: "dockroot.cache", json: "cache", types: jsonBool, def: def("1"), defDoc: "on",
		want: "0/1, no/yes or off/on", example: "0",
		doc: "keep a read-only copy of the image with the top layer applied (`.dockroot/bases/` on the top level) and make the next fresh layer from it while neither the image nor the top layer changed, so the top layer is not copied again; `0` copies it at every boot and keeps no copy",
		set: func(c *Config, s setting) (err error) { c.Cache, err = parseFlag(s); return err }},
	{key: "dockroot.adopt", json: "adopt", types: jsonBool, def: def("1"), defDoc: "on",
		want: "0/1, no/yes or off/on", example: "0",
		doc: "on the first boot after the ancestor hook, adopt its `NAME` (a snapshot of the booted image's top layer) as a layer of dockroot's own: kept as `NAME.adopted` until `dockroot gc --adopted`, never deleted by the rotation; `0` refuses it like any subvolume dockroot did not create",
		set: func(c *Config, s setting) (err error) { c.Adopt, err = parseFlag(s); return err }},
	{key: "dockroot.onfail", json: "onfail", types: jsonString, def: def(string(OnFailShell)), defDoc: "shell",
		want: "one of shell, reboot, halt, previous", example: "shell",
		doc: "what to do when the boot fails: `shell`, `reboot`, `halt`, or `previous` (boot the newest previous layer)",
		set: setString(func(c *Config, v string) { c.OnFail = OnFail(v) })},
	{key: "dockroot.layer", types: jsonString, def: def(string(LayerNew)), defDoc: "new",
		want: "one of new, previous, current", example: "previous",
		doc: "which rw layer to boot: `new` (a fresh snapshot of the image), `previous` (NAME.prev.1 as it was left: the boot menu's previous-layer entry) or `current` (NAME as it was left); `previous` and `current` resolve no image, make no snapshot, rotate nothing and apply no top layer. Kernel command line only",
		set: setString(func(c *Config, v string) { c.Layer = LayerMode(v) })},
	{key: "dockroot.timeout", json: "timeout", types: jsonInt, def: def("30"), defDoc: "30",
		want: "a whole number of seconds >= 0", example: "30",
		doc: "seconds to wait for the root and top-layer devices",
		set: setSeconds(func(c *Config) *time.Duration { return &c.Timeout })},
	{key: "dockroot.store", json: "store", types: jsonString, def: def(layout.StoreAuto), defDoc: layout.StoreAuto,
		want: "one of auto, graphdriver, containerd, podman", example: "auto",
		doc: "the image store: `auto` (every store that exists at docker_path=, containerd_path= and podman_path=; a name in two is refused), `graphdriver` (Docker's classic btrfs storage driver), `containerd` (Docker's containerd image store with containerd's btrfs snapshotter) or `podman` (rootful Podman with the btrfs driver)",
		set: setString(func(c *Config, v string) { c.Store = v })},
	{key: "dockroot.debug", json: "debug", types: jsonBool, def: def("0"), defDoc: "off",
		want: "a bare dockroot.debug, or =0/1/true/false", example: "1",
		doc: "verbose logging",
		set: func(c *Config, s setting) (err error) { c.Debug, err = parseFlag(s); return err }},
	{key: "dockroot.tries", json: "tries", types: jsonInt, def: def("3"), defDoc: "3",
		want: "a whole number >= 0", example: "3",
		doc: "boots of a new image not yet marked good before falling back to the last good image",
		set: setInt(func(c *Config) *int { return &c.Tries })},
}

func optionByKey(key string) *option {
	for i := range options {
		if options[i].key == key {
			return &options[i]
		}
	}
	return nil
}

func optionByJSON(name string) *option {
	for i := range options {
		if options[i].json != "" && options[i].json == name {
			return &options[i]
		}
	}
	return nil
}

// problem turns a conversion failure of s into a *ValidationError.
func (o *option) problem(s setting, err error) *ValidationError {
	return &ValidationError{Key: o.key, Value: s.value, Bare: s.bare, Source: s.source,
		Problem: err.Error(), Fix: o.fix(s.source)}
}

// fix says how to give o a valid value, where the bad one came from.
func (o *option) fix(source string) string {
	line := o.key
	if o.example != "" {
		line += "=" + o.example
	}
	f := fmt.Sprintf("use %s (%s)", line, o.want)
	if source != SourceCmdline && source != SourceDefault && source != "" && o.json != "" {
		f += fmt.Sprintf(`: correct %q in %s and rebuild the initramfs, or override it on the kernel command line`, o.json, source)
	} else {
		f += " on the kernel command line"
	}
	return f
}

// OptionDoc describes one configuration key, for documentation and
// `dockroot --help`.
type OptionDoc struct {
	Key     string // kernel command-line name
	JSON    string // dockroot.json field, "" if none
	Default string
	Meaning string
}

// Options lists every kernel parameter and dockroot.json field dockroot
// reads. TestReadmeTableListsEveryOption holds the README's table to it.
func Options() []OptionDoc {
	var out []OptionDoc
	for _, o := range options {
		key := o.key + "="
		switch o.key {
		case "rw":
			key = "ro / rw"
		case "rootwait":
			key = "rootwait[=N]"
		case "noresume":
			key = "noresume"
		case "dockroot.debug":
			key = "dockroot.debug[=0/1]"
		}
		out = append(out, OptionDoc{Key: key, JSON: o.json, Default: o.defDoc, Meaning: o.doc})
	}
	return append(out, OptionDoc{Key: "-- ARGS", JSON: "init_args", Default: "(none)", Meaning: "arguments for init"})
}

func setString(f func(c *Config, v string)) func(*Config, setting) error {
	return func(c *Config, s setting) error {
		if s.bare {
			return errors.New("needs a value after '='")
		}
		f(c, s.value)
		return nil
	}
}

// maxSeconds keeps time.Duration from overflowing.
const maxSeconds = math.MaxInt64 / int64(time.Second)

func parseInt(s setting) (int, error) {
	if s.bare {
		return 0, errors.New("needs a value after '='")
	}
	n, err := strconv.Atoi(s.value)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s.value)
	}
	return n, nil
}

func setInt(field func(c *Config) *int) func(*Config, setting) error {
	return func(c *Config, s setting) error {
		n, err := parseInt(s)
		if err == nil {
			*field(c) = n
		}
		return err
	}
}

func setSeconds(field func(c *Config) *time.Duration) func(*Config, setting) error {
	return func(c *Config, s setting) error {
		n, err := parseInt(s)
		if err != nil {
			return err
		}
		if int64(n) > maxSeconds || int64(n) < -maxSeconds {
			return fmt.Errorf("%d seconds is too long", n)
		}
		*field(c) = time.Duration(n) * time.Second
		return nil
	}
}

// setRootWait follows init/do_mounts.c: bare rootwait waits forever,
// rootwait=N waits N seconds and rootwait=0 does not wait. An unreadable N
// makes the kernel wait forever with a warning; dockroot refuses it
// instead, since a typo should not turn a bounded wait into a hang.
func setRootWait(c *Config, s setting) error {
	if s.bare {
		c.RootWait, c.RootWaitTimeout = true, 0
		return nil
	}
	n, err := parseInt(s)
	if err != nil {
		return err
	}
	if n < 0 || int64(n) > maxSeconds {
		return fmt.Errorf("%d is not a number of seconds >= 0", n)
	}
	c.RootWait, c.RootWaitTimeout = n > 0, time.Duration(n)*time.Second
	return nil
}

// parseFlag reads a boolean key: bare means true, as the kernel's flags.
func parseFlag(s setting) (bool, error) {
	if s.bare {
		return true, nil
	}
	switch strings.ToLower(s.value) {
	case "1", "y", "yes", "on", "true":
		return true, nil
	case "0", "n", "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a yes/no value (want the bare key, or =0/1/true/false)", s.value)
}

// setRootFlags splits rootflags= into the subvol= dockroot manages and the
// options for the final mount. btrfs lets the last subvol= win; so do we.
// subvolid= is dropped because the rw layer gets a new subvolume ID at
// every boot: an ID written in a boot entry would name an old layer.
func setRootFlags(c *Config, v string) {
	c.Subvol, c.RootFlags, c.subvolGiven, c.rootFlagsRaw = "", nil, false, v
	subvols := 0
	for _, f := range splitFlags(v) {
		switch {
		case strings.HasPrefix(f, "subvol="):
			c.Subvol, c.subvolGiven = strings.TrimPrefix(f, "subvol="), true
			subvols++
		case strings.HasPrefix(f, "subvolid="):
			c.Warnings = append(c.Warnings, fmt.Sprintf("rootflags: %s ignored: dockroot mounts the rw layer by name (subvol=), because the layer gets a new subvolume ID at every boot; remove %s from rootflags=", f, f))
		default:
			c.RootFlags = append(c.RootFlags, f)
		}
	}
	if subvols > 1 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("rootflags=%s has %d subvol= options; the last one (subvol=%s) is used, as btrfs does", v, subvols, c.Subvol))
	}
}

func splitFlags(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
