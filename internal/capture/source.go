package capture

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/securejoin"
)

// maxFileSize bounds a file Capture reads into memory: everything it
// takes is configuration or a key; a bigger file is not one.
const maxFileSize = 16 << 20

// spec is one thing a category takes: a file, or the entries of a
// directory.
type spec struct {
	path string
	// dir: take the entries of path (and of its subdirectories) whose
	// names match, rather than path itself.
	dir   bool
	match func(name string) bool // for dir; nil: every name
	// links: a symlink is copied as a symlink (its target never followed)
	// rather than left out.
	links bool
}

// specs are what each category but users takes.
var specs = map[string][]spec{
	// etc/hosts is taken only when it names the hostname (see hostsNote):
	// otherwise it is the image's own, and the image's next version may
	// change it.
	"identity": {{path: "etc/hostname"}, {path: "etc/machine-id"}, {path: "etc/machine-info"}, {path: "etc/hosts"}},
	"ssh":      {{path: "etc/ssh", dir: true, match: func(n string) bool { return strings.HasPrefix(n, "ssh_host_") }}},
	"network": {
		{path: "etc/NetworkManager/system-connections", dir: true},
		// Symlinks there are masks (-> /dev/null) or links to the image's
		// own units.
		{path: "etc/systemd/network", dir: true, links: true},
		{path: "etc/netplan", dir: true, match: func(n string) bool { return strings.HasSuffix(n, ".yaml") }},
	},
	"fstab": {{path: "etc/fstab"}, {path: "etc/crypttab"}},
	// etc/localtime is a symlink into the image's zoneinfo on most
	// systems, a copy of a zone file on some (Alpine).
	"time": {{path: "etc/adjtime"}, {path: "etc/timezone"}, {path: "etc/localtime", links: true}},
}

// entry is one file of the plan: what the machine has and what becomes
// of it.
type entry struct {
	cat, rel string
	action   Action
	why      string
	data     []byte
	link     string // the target, for a symlink
	isLink   bool
	st       unix.Stat_t // the source's owner, mode and times
	// regenerated: an account file made from the source's, whose times
	// are now rather than the source's.
	regenerated bool
}

func (e *entry) file() File {
	f := File{Category: e.cat, Path: e.rel, Action: e.action, Why: e.why}
	if e.action != LeftOut && e.action != Absent {
		f.UID, f.GID, f.Mode, f.Link = e.st.Uid, e.st.Gid, e.st.Mode&0o7777, e.link
	}
	return f
}

// source is the machine's root, read only through securejoin.
type source struct {
	root string
	dirs map[string]*unix.Stat_t // in-root directory -> its metadata, for the directories made in the target
}

func openSource(root string) (*source, error) {
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		return nil, fmt.Errorf("source root %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("source root %s: %w", root, unix.ENOTDIR)
	}
	return &source{root: root, dirs: map[string]*unix.Stat_t{}}, nil
}

func (s *source) close() {}

// openDir opens the in-root directory rel, resolving symlinks inside the
// root; nil, nil when it does not exist (or is not a directory).
func (s *source) openDir(rel string) (*os.File, error) {
	f, err := securejoin.OpenInRoot(s.root, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// dirMeta returns the metadata of the in-root directory rel (resolved in
// the root), which a directory made for it in the target copies.
func (s *source) dirMeta(rel string) (*unix.Stat_t, error) {
	if st, ok := s.dirs[rel]; ok {
		return st, nil
	}
	f, err := securejoin.OpenInRoot(s.root, rel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("stat %s in %s: %w", rel, s.root, err)
	}
	s.dirs[rel] = &st
	return &st, nil
}

// category plans the files of one category but users.
func (s *source) category(cat string) ([]*entry, error) {
	var out []*entry
	for _, sp := range specs[cat] {
		var es []*entry
		var err error
		if sp.dir {
			es, err = s.tree(cat, sp)
		} else {
			es, err = s.single(cat, sp)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	if cat == "identity" {
		s.hostsNote(out)
	}
	return out, nil
}

// hostsNote leaves etc/hosts out unless it names the machine's hostname
// (or its first label) on a line: only then was it made for this
// machine rather than shipped with the image.
func (s *source) hostsNote(es []*entry) {
	var hostname string
	var hosts *entry
	for _, e := range es {
		switch {
		case e.rel == "etc/hostname" && e.data != nil:
			hostname = strings.TrimSpace(strings.SplitN(string(e.data), "\n", 2)[0])
		case e.rel == "etc/hosts" && e.action == "":
			hosts = e
		}
	}
	if hosts == nil {
		return
	}
	if hosts.isLink {
		return
	}
	short, _, _ := strings.Cut(hostname, ".")
	if hostname != "" {
		for _, l := range strings.Split(string(hosts.data), "\n") {
			l, _, _ = strings.Cut(l, "#")
			f := strings.Fields(l)
			for _, n := range f[min(1, len(f)):] {
				if n == hostname || n == short {
					hosts.why = "it names the hostname " + hostname
					return
				}
			}
		}
	}
	hosts.action = LeftOut
	switch hostname {
	case "":
		hosts.why = "no etc/hostname to look for in it: the image's is kept"
	default:
		hosts.why = fmt.Sprintf("it does not name the hostname %s, so it is the image's own: the image's is kept", hostname)
	}
	hosts.data = nil
}

// single plans one file.
func (s *source) single(cat string, sp spec) ([]*entry, error) {
	dir, name := path.Split(sp.path)
	dir = strings.TrimSuffix(dir, "/")
	d, err := s.openDir(dir)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return []*entry{{cat: cat, rel: sp.path, action: Absent, why: "not on this machine"}}, nil
	}
	defer d.Close()
	e, err := s.read(int(d.Fd()), cat, sp.path, name, sp.links)
	if err != nil {
		return nil, err
	}
	return []*entry{e}, nil
}

// tree plans the matching entries of a directory and its
// subdirectories, in name order.
func (s *source) tree(cat string, sp spec) ([]*entry, error) {
	d, err := s.openDir(sp.path)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return []*entry{{cat: cat, rel: sp.path + "/", action: Absent, why: "not on this machine"}}, nil
	}
	defer d.Close()
	out, err := s.walk(d, cat, sp, sp.path, true)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		out = append(out, &entry{cat: cat, rel: sp.path + "/", action: Absent, why: "nothing in it to take"})
	}
	return out, nil
}

func (s *source) walk(d *os.File, cat string, sp spec, rel string, top bool) ([]*entry, error) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", rel, s.root, err)
	}
	sort.Strings(names)
	var out []*entry
	for _, n := range names {
		if top && sp.match != nil && !sp.match(n) {
			continue
		}
		child := rel + "/" + n
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("stat %s in %s: %w", child, s.root, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			e, err := s.read(int(d.Fd()), cat, child, n, sp.links)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
			continue
		}
		fd, err := unix.Openat(int(d.Fd()), n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s in %s: %w", child, s.root, err)
		}
		sub := os.NewFile(uintptr(fd), child)
		es, err := s.walk(sub, cat, sp, child, false)
		sub.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

// read plans the entry name of the directory dirfd, in-root path rel:
// a regular file's content, a symlink's target when links allows it. It
// never follows a symlink: the entry is looked at with
// AT_SYMLINK_NOFOLLOW and opened with O_NOFOLLOW.
func (s *source) read(dirfd int, cat, rel, name string, links bool) (*entry, error) {
	e := &entry{cat: cat, rel: rel}
	err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		e.action, e.why = Absent, "not on this machine"
		return e, nil
	case err != nil:
		return nil, fmt.Errorf("stat %s in %s: %w", rel, s.root, err)
	}
	switch e.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		target, err := securejoin.Readlinkat(dirfd, name)
		if err != nil {
			return nil, fmt.Errorf("read the symlink %s in %s: %w", rel, s.root, err)
		}
		if !links {
			e.action, e.why = LeftOut, fmt.Sprintf("a symlink to %s, not followed; copy what it names into the top layer by hand if the machine needs it", target)
			return e, nil
		}
		e.isLink, e.link = true, target
		return e, nil
	default:
		e.action, e.why = LeftOut, "not a regular file"
		return e, nil
	}
	if e.st.Size > maxFileSize {
		e.action, e.why = LeftOut, fmt.Sprintf("%d bytes: larger than any file of this kind should be", e.st.Size)
		return e, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", rel, s.root, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	// Fstat the open file: what fstatat saw may have been replaced since.
	if err := unix.Fstat(fd, &e.st); err != nil {
		return nil, fmt.Errorf("stat %s in %s: %w", rel, s.root, err)
	}
	if e.st.Mode&unix.S_IFMT != unix.S_IFREG {
		e.action, e.why = LeftOut, "not a regular file"
		return e, nil
	}
	e.data, err = io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", rel, s.root, err)
	}
	if len(e.data) > maxFileSize {
		e.action, e.why, e.data = LeftOut, "larger than any file of this kind should be", nil
	}
	return e, nil
}

// users plans the account files: the machine's human users and their
// groups (selectAccounts), each file regenerated with the source file's
// owner and mode.
func (s *source) users(rep *Report) ([]*entry, error) {
	etc, err := s.openDir("etc")
	if err != nil {
		return nil, err
	}
	rep.Ranges = DefaultRanges
	var es []*entry
	if etc == nil {
		for _, f := range accountFiles {
			es = append(es, &entry{cat: "users", rel: f, action: Absent, why: "not on this machine"})
		}
		return es, nil
	}
	defer etc.Close()
	defs, err := s.read(int(etc.Fd()), "users", "etc/login.defs", "login.defs", false)
	if err != nil {
		return nil, err
	}
	if defs.data != nil {
		rep.Ranges = ParseLoginDefs(defs.data)
	}
	src := map[string][]byte{}
	for _, f := range accountFiles {
		e, err := s.read(int(etc.Fd()), "users", f, path.Base(f), false)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
		if e.action == "" {
			src[f] = e.data
		}
	}
	sel := selectAccounts(src, rep.Ranges)
	for _, e := range es {
		if data, ok := sel.files[e.rel]; ok {
			e.data, e.regenerated = data, true
		}
	}
	rep.Accounts, rep.SystemGroups = sel.accounts, sel.systemGroups
	return es, nil
}
