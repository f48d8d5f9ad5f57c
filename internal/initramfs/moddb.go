package initramfs

import (
	"github.com/dockroot/dockroot/internal/kmod"

	"bufio"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// ModName normalises a kernel module name the way the kernel and kmod do:
// "usb-storage" and "usb_storage" are the same module (scripts/Makefile.lib
// turns '-' into '_' in KBUILD_MODNAME).
func ModName(s string) string {
	return strings.ReplaceAll(s, "-", "_")
}

// moduleSuffixes are the file name endings of loadable modules, plain or as
// compressed by the kernel's modules_install (CONFIG_MODULE_COMPRESS_*).
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// nameFromPath returns the module name of a module file path, or "" when the
// path does not name a module file.
func nameFromPath(p string) string {
	base := path.Base(p)
	for _, suf := range moduleSuffixes {
		if strings.HasSuffix(base, suf) {
			return ModName(strings.TrimSuffix(base, suf))
		}
	}
	return ""
}

// plainPath is p without a compression suffix: the name the module gets in
// the initramfs, where it is stored decompressed.
func plainPath(p string) string {
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+suf) {
			return strings.TrimSuffix(p, suf)
		}
	}
	return p
}

// alias is one "alias PATTERN MODULE" line: PATTERN is an fnmatch glob.
type alias struct {
	pattern, module string
}

// DB is the module database of one kernel: what depmod writes into
// /lib/modules/KVER (modules.dep, modules.softdep, modules.alias) plus what
// the kernel build installs (modules.builtin, modules.builtin.modinfo).
// All names are normalised with ModName.
type DB struct {
	paths          map[string]string   // module name -> path relative to lib/modules/KVER
	deps           map[string][]string // module name -> module names it needs (modules.dep)
	softPre        map[string][]string // module name -> names or aliases to load first
	softPost       map[string][]string // module name -> names or aliases to load after
	aliases        []alias
	builtin        map[string]bool
	builtinAliases []alias
}

// NewDB returns an empty database.
func NewDB() *DB {
	return &DB{
		paths:    map[string]string{},
		deps:     map[string][]string{},
		softPre:  map[string][]string{},
		softPost: map[string][]string{},
		builtin:  map[string]bool{},
	}
}

// Len is the number of loadable modules known.
func (db *DB) Len() int { return len(db.paths) }

// Path returns the file of a loadable module, relative to lib/modules/KVER.
func (db *DB) Path(name string) (string, bool) {
	p, ok := db.paths[ModName(name)]
	return p, ok
}

// addModule records a module file, keeping the first path by depmod's
// default search order when a name appears twice: updates/ overrides the
// kernel's own modules, which override other directories (extra/, ...).
func (db *DB) addModule(p string) string {
	name := nameFromPath(p)
	if name == "" {
		return ""
	}
	if old, ok := db.paths[name]; ok && searchRank(old) <= searchRank(p) {
		return name
	}
	db.paths[name] = p
	return name
}

func searchRank(p string) int {
	switch {
	case strings.HasPrefix(p, "updates/"):
		return 0
	case strings.HasPrefix(p, "kernel/"):
		return 1
	}
	return 2
}

// eachLine calls fn with every non-empty, non-comment line of r, and names
// the file and line number in errors.
func eachLine(file string, r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("%s line %d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// ParseDep reads modules.dep: "kernel/fs/btrfs/btrfs.ko: kernel/lib/libcrc32c.ko ...",
// each line a module and the modules it needs (depmod lists them transitively).
func (db *DB) ParseDep(r io.Reader) error {
	return eachLine("modules.dep", r, func(line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%q: want \"MODULE: DEPS\"", line)
		}
		name := db.addModule(strings.TrimSpace(mod))
		if name == "" {
			return fmt.Errorf("%q is not a module file name", mod)
		}
		var names []string
		for _, d := range strings.Fields(deps) {
			dn := db.addModule(d)
			if dn == "" {
				return fmt.Errorf("dependency %q of %s is not a module file name", d, name)
			}
			names = append(names, dn)
		}
		db.deps[name] = names
		return nil
	})
}

// ParseSoftdep reads modules.softdep: "softdep btrfs pre: crc32c xxhash64 post: foo".
// Like kmod (libkmod-config.c), words before the first "pre:" or "post:"
// are ignored.
func (db *DB) ParseSoftdep(r io.Reader) error {
	return eachLine("modules.softdep", r, func(line string) error {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return fmt.Errorf("%q: want \"softdep MODULE pre: ... post: ...\"", line)
		}
		db.addSoftdep(f[1], strings.Join(f[2:], " "))
		return nil
	})
}

func (db *DB) addSoftdep(module, spec string) {
	name := ModName(module)
	var mode string
	for _, w := range strings.Fields(spec) {
		switch w {
		case "pre:", "post:":
			mode = w
		default:
			switch mode {
			case "pre:":
				db.softPre[name] = append(db.softPre[name], w)
			case "post:":
				db.softPost[name] = append(db.softPost[name], w)
			}
		}
	}
}

// ParseAlias reads modules.alias: "alias crypto-crc32c crc32c_generic".
func (db *DB) ParseAlias(r io.Reader) error {
	return eachLine("modules.alias", r, func(line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("%q: want \"alias PATTERN MODULE\"", line)
		}
		db.aliases = append(db.aliases, alias{kmod.NormalizeAlias(f[1]), ModName(f[2])})
		return nil
	})
}

// ParseBuiltin reads modules.builtin: one path per line of a module compiled
// into the kernel image, so asking for it needs no file.
func (db *DB) ParseBuiltin(r io.Reader) error {
	return eachLine("modules.builtin", r, func(line string) error {
		name := nameFromPath(line)
		if name == "" {
			return fmt.Errorf("%q is not a module file name", line)
		}
		db.builtin[name] = true
		return nil
	})
}

// ParseBuiltinModinfo reads modules.builtin.modinfo (Linux 5.2+): NUL
// separated "module.key=value" records of the built-in modules. Their alias
// records say, for example, that "sha256" is provided by the kernel image.
func (db *DB) ParseBuiltinModinfo(data []byte) {
	for _, rec := range bytes.Split(data, []byte{0}) {
		mod, kv, ok := strings.Cut(string(rec), ".")
		if !ok {
			continue
		}
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		name := ModName(mod)
		db.builtin[name] = true
		if key == "alias" {
			db.builtinAliases = append(db.builtinAliases, alias{kmod.NormalizeAlias(val), name})
		}
	}
}

// AddModinfo records one module file's own .modinfo strings (NUL separated
// "key=value"): its depends=, softdep= and alias= entries. It is how the
// database is built when depmod has not run, as in an unpacked kernel package.
func (db *DB) AddModinfo(p string, modinfo []byte) {
	name := db.addModule(p)
	if name == "" || db.paths[name] != p {
		return
	}
	db.deps[name] = nil
	for _, rec := range bytes.Split(modinfo, []byte{0}) {
		key, val, ok := strings.Cut(string(rec), "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(val, ",") {
				if d = strings.TrimSpace(d); d != "" {
					db.deps[name] = append(db.deps[name], ModName(d))
				}
			}
		case "softdep":
			db.addSoftdep(name, val)
		case "alias":
			db.aliases = append(db.aliases, alias{kmod.NormalizeAlias(val), name})
		}
	}
}

// finish sorts what order of discovery would otherwise make arbitrary.
func (db *DB) finish() {
	for _, as := range [][]alias{db.aliases, db.builtinAliases} {
		sort.SliceStable(as, func(i, j int) bool { return as[i].module < as[j].module })
	}
}

// Lookup finds what provides name, in kmod's lookup order: a module of that
// name, then the modules whose aliases match (all of them, as modprobe loads
// all), then a built-in module of that name or alias.
func (db *DB) Lookup(name string) (modules []string, builtin bool) {
	n := kmod.NormalizeAlias(name)
	if _, ok := db.paths[n]; ok {
		return []string{n}, false
	}
	if ms := matchAliases(db.aliases, n); len(ms) > 0 {
		return ms, false
	}
	if db.builtin[n] || len(matchAliases(db.builtinAliases, n)) > 0 {
		return nil, true
	}
	return nil, false
}

func matchAliases(as []alias, name string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range as {
		if seen[a.module] || !globMatch(a.pattern, name) {
			continue
		}
		seen[a.module] = true
		out = append(out, a.module)
	}
	return out
}

// globMatch is fnmatch(3) without flags, which is how kmod matches aliases:
// unlike path.Match, '*' also matches '/'.
func globMatch(pattern, name string) bool {
	if !strings.ContainsAny(pattern, "*?[\\") {
		return pattern == name
	}
	// Translate to path.Match on a string free of '/', which is the only
	// character path.Match treats differently.
	const slash = "\x00"
	ok, err := path.Match(strings.ReplaceAll(pattern, "/", slash), strings.ReplaceAll(name, "/", slash))
	return err == nil && ok
}
