package config

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/machineid"
)

// ValidationError is one setting dockroot cannot boot with. Its message
// names the key, the value and where it came from, says what was expected
// and what to do; it is a single line, so it fits one /dev/kmsg record.
type ValidationError struct {
	Key     string // command-line name, e.g. "rootflags" or "dockroot.keep"
	Value   string // the value as given
	Bare    bool   // the key was given without '='
	Source  string // "cmdline", a config file's path, "default" or "" (set in code)
	Problem string // what is wrong
	Fix     string // what to do
	// Missing marks "not set anywhere" problems, which the kernel command
	// line can still fix at boot (CheckFile ignores them).
	Missing bool
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	switch {
	case e.Missing && e.Value == "":
		b.WriteString(e.Key)
	case e.Bare:
		b.WriteString(e.Key)
	default:
		fmt.Fprintf(&b, "%s=%q", e.Key, e.Value)
	}
	if s := describeSource(e.Source); s != "" && !(e.Missing && e.Value == "") {
		fmt.Fprintf(&b, " (%s)", s)
	}
	fmt.Fprintf(&b, ": %s", e.Problem)
	if e.Fix != "" {
		fmt.Fprintf(&b, "; %s", e.Fix)
	}
	return oneLine(b.String())
}

// oneLine escapes control characters, which reach messages through quoted
// command-line values ("a\nb" is one kernel parameter), so that a message
// stays one /dev/kmsg record and one console line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }

func describeSource(s string) string {
	switch s {
	case SourceCmdline:
		return "kernel command line"
	case SourceDefault:
		return "default"
	}
	return s
}

// DefaultSubvol is the rw layer name suggested in messages: the name the
// ancestor's documentation used.
const DefaultSubvol = "docker_rwlayer"

// dockerRootEntries are the names Docker keeps at the top of its data root.
// When docker_path is "." (the filesystem is mounted at /var/lib/docker) the
// rw layer must not take one of them.
var dockerRootEntries = []string{"btrfs", "buildkit", "containerd", "containers", "engine-id", "image", "network", "overlay2", "plugins", "runtimes", "swarm", "tmp", "trust", "volumes"}

// Validate checks c and returns every problem found, joined, each a
// *ValidationError (see Problems). Load calls it; a caller that builds a
// Config itself should too.
func (c *Config) Validate() error {
	v := validator{c: c}
	v.root()
	v.paths()
	v.image()
	v.init()
	v.numbers()
	v.choices()
	return errors.Join(v.errs...)
}

type validator struct {
	c    *Config
	errs []error
}

func (v *validator) add(key, value string, missing bool, problem, fix string) {
	v.errs = append(v.errs, &ValidationError{Key: key, Value: value, Source: v.c.Sources[key],
		Problem: problem, Fix: fix, Missing: missing})
}

func (v *validator) fix(key string) string {
	return optionByKey(key).fix(v.c.Sources[key])
}

func (v *validator) root() {
	c := v.c
	if c.Root == "" {
		v.add("root", "", c.Sources["root"] != SourceCmdline,
			"not set: dockroot needs the device of the btrfs filesystem that holds the Docker data root",
			"add root=LABEL=<label> or root=UUID=<uuid> (as blkid prints them) to the kernel command line")
	} else if _, err := ParseDeviceSpec(c.Root); err != nil {
		v.add("root", c.Root, false, err.Error(), v.fix("root"))
	}
	if c.Toplayer != "" && !sameDevice(c.Toplayer, c.Root) {
		if _, err := ParseDeviceSpec(c.Toplayer); err != nil {
			v.add("toplayer", c.Toplayer, false, err.Error(), v.fix("toplayer"))
		}
	}
	if c.RootFSType != "btrfs" {
		v.add("rootfstype", c.RootFSType, false,
			"dockroot works only on btrfs: it snapshots the image's btrfs subvolume into the rw layer",
			"use rootfstype=btrfs, or drop rootfstype= (btrfs is the default)")
	}
}

// paths checks docker_path, the rootflags subvol= and toplayer_path, alone
// and against each other: the rw layer is deleted and re-created at every
// boot, so it must not hold, or sit inside, anything that has to survive.
func (v *validator) paths() {
	c := v.c
	dp, dpOK := "", false
	switch {
	case c.DockerPath == "" || strings.HasPrefix(c.DockerPath, "/"):
		problem := "is empty"
		if c.DockerPath != "" {
			problem = "is an absolute path, but it is read relative to the top level of the btrfs filesystem on root= (mounted with subvolid=5), not from /"
		}
		v.add("docker_path", c.DockerPath, false, problem,
			"for Docker's default data root on the filesystem's top level use docker_path=var/lib/docker; if the whole filesystem is mounted at /var/lib/docker use docker_path=.")
	default:
		var err error
		if dp, err = cleanRel(c.DockerPath); err != nil {
			v.add("docker_path", c.DockerPath, false, err.Error(), v.fix("docker_path"))
		} else {
			dpOK = true
		}
	}

	// The other stores' roots, which the rw layer must stay out of.
	type storeRoot struct{ key, path string }
	var storeRoots []storeRoot
	if c.PodmanPath == "" || strings.HasPrefix(c.PodmanPath, "/") {
		v.add("podman_path", c.PodmanPath, false, "must be a path relative to the top level of the btrfs filesystem on root=",
			"for rootful Podman's default graph root use podman_path="+layout.DefaultPodmanPath)
	} else if p, err := cleanRel(c.PodmanPath); err != nil {
		v.add("podman_path", c.PodmanPath, false, err.Error(), v.fix("podman_path"))
	} else if p != "." {
		storeRoots = append(storeRoots, storeRoot{"podman_path", p})
	}

	if c.ContainerdPath == "" || strings.HasPrefix(c.ContainerdPath, "/") {
		v.add("containerd_path", c.ContainerdPath, false, "must be a path relative to the top level of the btrfs filesystem on root=",
			"for a system containerd's default root use containerd_path="+layout.DefaultContainerdPath)
	} else if p, err := cleanRel(c.ContainerdPath); err != nil {
		v.add("containerd_path", c.ContainerdPath, false, err.Error(), v.fix("containerd_path"))
	} else if p != "." {
		storeRoots = append(storeRoots, storeRoot{"containerd_path", p})
	}

	flags := c.rootFlagsRaw
	if flags == "" {
		flags = strings.Join(c.RootFlags, ",") // a Config built in code
	}
	sv, svOK := "", false
	switch {
	case c.Subvol == "" && !c.subvolGiven:
		suggested := strings.Join(append([]string{"subvol=" + DefaultSubvol}, c.RootFlags...), ",")
		fix := fmt.Sprintf(`add "rootflags=%s" to the kernel command line`, suggested)
		if c.Sources["rootflags"] == SourceCmdline {
			fix = fmt.Sprintf(`replace rootflags=%s with "rootflags=%s" on the kernel command line`, flags, suggested)
		}
		v.errs = append(v.errs, &ValidationError{Key: "rootflags", Value: flags, Source: c.Sources["rootflags"], Missing: true,
			Problem: "has no subvol=NAME: dockroot needs it to know where to create the rw layer (a path from the btrfs top level, re-created from the image at every boot)",
			Fix:     fix})
	default:
		var err error
		sv, err = cleanRel(c.Subvol)
		switch {
		case err != nil:
			v.subvolError(fmt.Sprintf("subvol=%s: %v", c.Subvol, err))
		case sv == ".":
			v.subvolError(fmt.Sprintf("subvol=%s names the top level of the filesystem: dockroot would replace the whole filesystem, Docker's data included, with the image", c.Subvol))
		case within(sv, layout.StateDir):
			v.subvolError(fmt.Sprintf("subvol=%s lies inside dockroot's own state directory %s", c.Subvol, layout.StateDir))
		case isRotationName(path.Base(sv)):
			v.subvolError(fmt.Sprintf("subvol=%s is one of dockroot's rotation names (NAME%sN, NAME%s, NAME%s, NAME%s), which it renames and deletes", c.Subvol, layout.PrevInfix, layout.TmpSuffix, layout.AdoptedSuffix, layout.FailedSuffix))
		case dpOK && dp == "." && slices.Contains(dockerRootEntries, strings.Split(sv, "/")[0]):
			v.subvolError(fmt.Sprintf("subvol=%s is inside the Docker data root (docker_path=., the whole filesystem): %s is Docker's own", c.Subvol, strings.Split(sv, "/")[0]))
		case dpOK && dp != "." && within(sv, dp):
			v.subvolError(fmt.Sprintf("subvol=%s lies inside the Docker data root docker_path=%s: dockroot would snapshot into Docker's own tree", c.Subvol, dp))
		case dpOK && dp != "." && within(dp, sv):
			v.subvolError(fmt.Sprintf("subvol=%s contains the Docker data root docker_path=%s: re-creating the rw layer at boot would throw away Docker's images", c.Subvol, dp))
		default:
			svOK = true
		}
		for _, st := range storeRoots {
			if !svOK {
				break
			}
			switch {
			case within(sv, st.path):
				v.subvolError(fmt.Sprintf("subvol=%s lies inside the image store %s=%s: dockroot would snapshot into that store's own tree", c.Subvol, st.key, st.path))
				svOK = false
			case within(st.path, sv):
				v.subvolError(fmt.Sprintf("subvol=%s contains the image store %s=%s: re-creating the rw layer at boot would throw away its images", c.Subvol, st.key, st.path))
				svOK = false
			}
		}
	}

	elems := c.toplayerElems()
	list := len(elems) > 1
	for i, e := range elems {
		name := func(problem string) string {
			if !list {
				return problem
			}
			return fmt.Sprintf("element %d (%q): %s", i+1, e, problem)
		}
		if e == "" {
			v.add("toplayer_path", c.ToplayerPath, false,
				fmt.Sprintf("element %d is empty: a comma separates two directories", i+1), v.fix("toplayer_path"))
			continue
		}
		if err := machineid.Check(e); err != nil {
			v.add("toplayer_path", c.ToplayerPath, false, name(err.Error()), v.fix("toplayer_path"))
			continue
		}
		tp, err := cleanRel(e)
		if err != nil {
			v.add("toplayer_path", c.ToplayerPath, false, name(err.Error()), v.fix("toplayer_path"))
			continue
		}
		if problem, fix := c.toplayerOverlap(tp, dp, dpOK, sv, svOK); problem != "" {
			v.add("toplayer_path", c.ToplayerPath, false, name(problem), fix)
		}
	}
}

// toplayerOverlap says what is wrong with the top-layer directory tp
// (cleaned, relative), and what to do, when it is on the root device: it
// is read from the same top level as everything dockroot and Docker keep,
// and must be none of those. dp and sv are docker_path and the rw layer,
// cleaned, when valid.
func (c *Config) toplayerOverlap(tp, dp string, dpOK bool, sv string, svOK bool) (problem, fix string) {
	if !c.ToplayerOnRoot() {
		return "", ""
	}
	fix = "keep the per-machine files in a directory of their own, e.g. toplayer_path=boot_docker"
	switch {
	case dpOK && (dp == "." && slices.Contains(dockerRootEntries, strings.Split(tp, "/")[0]) || dp != "." && (within(tp, dp) || within(dp, tp))):
		return fmt.Sprintf("overlaps the Docker data root docker_path=%s on the same device: Docker's whole store would be copied into every layer", c.DockerPath), fix
	case within(tp, layout.StateDir) || within(layout.StateDir, tp):
		return fmt.Sprintf("overlaps dockroot's own state directory %s", layout.StateDir), fix
	case !svOK:
	case within(tp, sv):
		return fmt.Sprintf("lies inside the rw layer subvol=%s on the same device, which is replaced at every boot", sv),
			"keep the top layer outside the rw layer, e.g. toplayer_path=boot_docker"
	case within(sv, tp):
		return fmt.Sprintf("contains the rw layer subvol=%s on the same device, so the top layer would be copied into itself", sv),
			"point toplayer_path= at a directory that holds only the per-machine files, e.g. toplayer_path=boot_docker"
	case rotationOf(tp, sv) != "":
		return fmt.Sprintf("lies in %s, a previous or unfinished rw layer of subvol=%s, which dockroot rotates and deletes", rotationOf(tp, sv), sv), fix
	}
	return "", ""
}

// CheckToplayerPath checks one element of toplayer_path= once the boot has
// put the machine's values in it (a serial number could spell "var"),
// against the same overlaps Validate checks. c must have passed Validate.
func (c *Config) CheckToplayerPath(expanded string) error {
	tp, err := cleanRel(expanded)
	if err != nil {
		return &ValidationError{Key: "toplayer_path", Value: expanded, Source: c.Sources["toplayer_path"], Problem: err.Error()}
	}
	dp, dpErr := cleanRel(c.DockerPath)
	sv, svErr := cleanRel(c.Subvol)
	if problem, fix := c.toplayerOverlap(tp, dp, dpErr == nil && c.DockerPath != "", sv, svErr == nil && sv != "."); problem != "" {
		return &ValidationError{Key: "toplayer_path", Value: expanded, Source: c.Sources["toplayer_path"], Problem: problem, Fix: fix}
	}
	return nil
}

// isRotationName says whether a base name is one of the rotation names
// dockroot makes beside a layer (layout.PrevInfix, layout.TmpSuffix,
// layout.AdoptedSuffix, layout.FailedSuffix).
func isRotationName(base string) bool {
	return strings.Contains(base, layout.PrevInfix) || strings.HasSuffix(base, layout.TmpSuffix) ||
		strings.HasSuffix(base, layout.AdoptedSuffix) || strings.HasSuffix(base, layout.FailedSuffix)
}

// rotationOf returns the rotation name of the layer sv that p is or lies
// in (sv.prev.N, sv.dockroot-tmp, sv.adopted, sv.failed), or "". Both are
// cleaned and relative.
func rotationOf(p, sv string) string {
	dir, base := path.Split(sv)
	rest, ok := strings.CutPrefix(p, dir)
	if !ok {
		return ""
	}
	first := strings.Split(rest, "/")[0]
	if n, ok := strings.CutPrefix(first, base+layout.PrevInfix); ok && n != "" || first == base+layout.TmpSuffix ||
		first == base+layout.AdoptedSuffix || first == base+layout.FailedSuffix {
		return dir + first
	}
	return ""
}

func (v *validator) subvolError(problem string) {
	others := strings.Join(append([]string{"subvol=" + DefaultSubvol}, v.c.RootFlags...), ",")
	flags := v.c.rootFlagsRaw
	if flags == "" { // a Config built in code
		flags = strings.Join(append([]string{"subvol=" + v.c.Subvol}, v.c.RootFlags...), ",")
	}
	v.errs = append(v.errs, &ValidationError{Key: "rootflags", Value: flags,
		Source: v.c.Sources["rootflags"], Problem: problem,
		Fix: fmt.Sprintf(`name a subvolume of its own outside the Docker data root, e.g. "rootflags=%s"`, others)})
}

func (v *validator) image() {
	c := v.c
	if c.Image != "" || c.Layer == LayerPrevious || c.Layer == LayerCurrent {
		// An existing layer boots as it was left: no image is resolved.
		return
	}
	if c.Sources["docker_image"] == SourceCmdline {
		v.add("docker_image", "", false,
			"is empty on the kernel command line, which overrides the config files",
			"give a reference, e.g. docker_image=debian:bookworm, or remove docker_image= to use the config files")
		return
	}
	if src := c.Sources["docker_image"]; src != SourceDefault && src != "" {
		v.add("docker_image", "", false, "is empty, which hides the files after it",
			fmt.Sprintf(`give a reference in "docker_image" of %s (e.g. "debian:bookworm") or remove the field, or set docker_image=REF on the kernel command line`, src))
		return
	}
	v.add("docker_image", "", true, "not set: dockroot does not know which image to boot",
		`set it in one of three ways: docker_image=REF on the kernel command line (e.g. docker_image=debian:bookworm), "docker_image" in /etc/dockroot.json, or "docker_image" and "docker_tag" in /etc/docker-btrfs.json (the last two are baked into the initramfs: `+"`dockroot initramfs --config FILE`"+`, and /etc/docker-btrfs.json whenever it exists on the machine that builds it)`)
}

func (v *validator) init() {
	if !path.IsAbs(v.c.Init) {
		problem := "is not an absolute path"
		if v.c.Init == "" {
			problem = "is empty"
		}
		v.add("init", v.c.Init, false, problem+": the kernel runs init= by its path inside the new root", v.fix("init"))
	}
}

func (v *validator) numbers() {
	c := v.c
	for _, n := range []struct {
		key string
		val int
	}{{"dockroot.keep", c.Keep}, {"dockroot.tries", c.Tries}, {"resume_offset", c.ResumeOffset}} {
		if n.val < 0 {
			v.add(n.key, strconv.Itoa(n.val), false, "is negative", v.fix(n.key))
		}
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{{"dockroot.timeout", c.Timeout}, {"rootdelay", c.RootDelay}, {"rootwait", c.RootWaitTimeout}} {
		if d.val < 0 {
			v.add(d.key, strconv.FormatInt(int64(d.val/time.Second), 10), false, "is negative", v.fix(d.key))
		}
	}
}

func (v *validator) choices() {
	c := v.c
	if !slices.Contains(OnFails, c.OnFail) {
		v.add("dockroot.onfail", string(c.OnFail), false,
			"is not a known policy", v.fix("dockroot.onfail"))
	}
	if !slices.Contains(LayerModes, c.Layer) {
		v.add("dockroot.layer", string(c.Layer), false,
			"is not a known layer", v.fix("dockroot.layer"))
	}
	if !slices.Contains(layout.StoreKinds, c.Store) {
		v.add("dockroot.store", c.Store, false,
			"is not a known store", v.fix("dockroot.store"))
	}
}

// cleanRel cleans a path meant relative to a filesystem's top level: a
// leading '/' is dropped (btrfs reads subvol=/x as x) and ".." is refused
// outright rather than resolved, because it always means a mistake here.
// The top level itself comes back as ".".
func cleanRel(p string) (string, error) {
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", errors.New(`contains "..": give the path from the top level of the filesystem without ".."`)
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// within reports whether path a is b or lies below it; "." contains
// everything. Both are cleaned and relative.
func within(a, b string) bool {
	return b == "." || a == b || strings.HasPrefix(a, b+"/")
}
