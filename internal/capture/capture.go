// Package capture copies the files that make a machine itself (hostname,
// machine-id, SSH host keys, network connections, human users, fstab,
// time zone) out of its root into a top-layer directory, the inverse of
// package toplayer, which lays that directory over every fresh layer at
// boot. The host tool's `dockroot toplayer capture` calls Capture; it
// runs on the booted machine, or against another root for tests and for
// machines mounted elsewhere.
//
// The source root is read the way the kernel would after chroot into it
// (securejoin.OpenInRoot): a symlink never leads out of it, and a file
// that is itself a symlink is not followed (it is left out, or copied as
// a symlink where a symlink is the file's usual form: etc/localtime,
// masks in etc/systemd/network). The top-layer directory is written by
// directory file descriptor with O_NOFOLLOW at every component below it,
// each file under a temporary name renamed over the old one, so nothing
// already in it (a symlink etc -> /etc) redirects a write.
//
// It is host-only and must not import the boot (hook), internal/commands or
// cmd/...; it reads the booted record through internal/bootrecord.
package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// Categories are the names --what takes, in the order the report lists
// what each took.
var Categories = []string{"identity", "ssh", "network", "users", "fstab", "time"}

// Options says what Capture copies from where to where.
type Options struct {
	From string   // the machine's root: "/"
	To   string   // the top-layer directory; made if missing
	What []string // a subset of Categories; nil or empty: all
	// DryRun plans and reports, and writes nothing (not even To).
	DryRun bool
	// BootRecord is the boot record's path (layout.BootRecord). When it
	// exists, dockroot booted this system, and To must not be on the
	// rw layer mounted as HostRoot. "" skips the check.
	BootRecord string
	// HostRoot is the running system's root, "/": the rw layer itself
	// when dockroot booted it. Tests give a temporary directory.
	HostRoot string
}

// Action is what Capture did, or would do, with one file.
type Action string

// Actions, as the report prints them.
const (
	New       Action = "new"       // not in the top layer before
	Replaced  Action = "replaced"  // in it, different (content, owner, mode or link target)
	Unchanged Action = "unchanged" // in it already, the same: not written
	LeftOut   Action = "left out"  // on the machine, not taken: File.Why says why
	Absent    Action = "absent"    // not on the machine
)

// File is one file the capture looked at.
type File struct {
	Category string
	Path     string // under the root and the top layer: "etc/hostname"
	Action   Action
	Why      string // for LeftOut and Absent; a note otherwise, or ""
	// The source's owner, mode (st_mode & 07777: permissions, setuid,
	// setgid, sticky) and its target when it is a symlink, for what was
	// taken.
	UID, GID uint32
	Mode     uint32
	Link     string
}

// Report is everything Capture looked at, in its order.
type Report struct {
	From, To string
	What     []string
	Files    []File
	Accounts []Account // when users was captured: each user, and each group taken or in the human range
	// SystemGroups counts the system groups (gid outside GID_MIN..GID_MAX)
	// left out without a line in Accounts, having no captured member.
	SystemGroups int
	Ranges       Ranges // the uid and gid ranges users were chosen by
	DryRun       bool
}

// Written counts the files Capture wrote (or would write): new and
// replaced.
func (r *Report) Written() (n, replaced int) {
	for _, f := range r.Files {
		switch f.Action {
		case New:
			n++
		case Replaced:
			n++
			replaced++
		}
	}
	return n, replaced
}

// UnknownCategoryError is a --what name that is not one of Categories.
type UnknownCategoryError struct{ Name string }

func (e *UnknownCategoryError) Error() string {
	return fmt.Sprintf("unknown category %q (there are %s)", e.Name, strings.Join(Categories, ", "))
}

// ParseWhat splits a comma-separated list of categories; "" and "all"
// are all of them. The result is in Categories' order, without repeats.
func ParseWhat(s string) ([]string, error) {
	if s == "" || s == "all" {
		return slices.Clone(Categories), nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(Categories, n) {
			return nil, &UnknownCategoryError{Name: n}
		}
		want[n] = true
	}
	var out []string
	for _, c := range Categories {
		if want[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// Capture copies the categories opt.What from opt.From into opt.To (see
// the package doc) and reports each file and account. It checks the
// target first: not the source root itself, and not on the rw layer
// dockroot booted (*RwLayerError). With opt.DryRun it writes nothing.
// A file in opt.To is written only when it differs from what the
// machine has; the account files are regenerated whole.
func Capture(opt Options) (*Report, error) {
	what := opt.What
	if len(what) == 0 {
		what = Categories
	}
	for _, w := range what {
		if !slices.Contains(Categories, w) {
			return nil, &UnknownCategoryError{Name: w}
		}
	}
	if opt.From == "" || opt.To == "" {
		return nil, errors.New("capture: the source root and the top-layer directory must be given")
	}
	if err := checkTarget(opt); err != nil {
		return nil, err
	}
	rep := &Report{From: opt.From, To: opt.To, What: what, DryRun: opt.DryRun}
	src, err := openSource(opt.From)
	if err != nil {
		return nil, err
	}
	defer src.close()
	var plan []*entry
	for _, c := range Categories {
		if !slices.Contains(what, c) {
			continue
		}
		var es []*entry
		if c == "users" {
			es, err = src.users(rep)
		} else {
			es, err = src.category(c)
		}
		if err != nil {
			return nil, err
		}
		plan = append(plan, es...)
	}
	dst := &target{dir: opt.To}
	for _, e := range plan {
		if e.action == "" {
			if e.action, err = dst.compare(e); err != nil {
				return nil, err
			}
		}
		rep.Files = append(rep.Files, e.file())
	}
	if opt.DryRun {
		return rep, nil
	}
	if err := dst.write(src, plan); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkTarget refuses a top-layer directory that is the source root, or
// on the rw layer this system booted as opt.HostRoot.
func checkTarget(opt Options) error {
	dir, err := existingAncestor(opt.To)
	if err != nil {
		return err
	}
	t, err := statID(dir)
	if err != nil {
		return err
	}
	if f, err := statID(opt.From); err == nil && f.Dev == t.Dev && f.Ino == t.Ino && dir == filepath.Clean(opt.To) {
		return fmt.Errorf("write the top layer into %s: it is the source root %s itself, whose account files would be cut down to the human users", opt.To, opt.From)
	}
	if opt.BootRecord == "" {
		return nil
	}
	rec, err := bootrecord.Read(opt.BootRecord)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // not booted by dockroot: / is whatever it is, and stays
	case err != nil:
		return err
	}
	hostRoot := opt.HostRoot
	if hostRoot == "" {
		hostRoot = "/"
	}
	r, err := statID(hostRoot)
	if err != nil {
		return err
	}
	return CheckTarget(opt.To, rec, r, t)
}

// existingAncestor returns the nearest of path and its parents that
// exists: where a new top-layer directory would be made.
func existingAncestor(path string) (string, error) {
	p := filepath.Clean(path)
	for {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || p == filepath.Dir(p) {
			return "", fmt.Errorf("top-layer directory %s: %w", path, err)
		}
		p = filepath.Dir(p)
	}
}
