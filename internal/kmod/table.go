package kmod

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// # The module table: /etc/dockroot/modules.table
//
// The initramfs builder writes it beside the module list when the init is
// to load by hardware (`dockroot initramfs --modules alias|hostonly`). It
// holds, for the modules the initramfs packs, what modprobe would read
// from modules.dep, modules.softdep and modules.alias, already resolved
// to module indices, so the init matches device aliases without parsing
// text or resolving names at boot. Patterns are stored normalised
// (NormalizeAlias), as kmod compares them:
//
//	magic    "DRKMODT\x01" (8 bytes; the last byte is the format version)
//	uvarint  number of modules N
//	N times: string name, string path (relative to /lib/modules/KVER),
//	         byte flags (FlagAlways: load whatever the hardware),
//	         uvarint count + uvarint indices of hard dependencies,
//	         the same for "pre:" soft dependencies,
//	         the same for "post:" soft dependencies
//	uvarint  number of aliases A
//	A times: string literal prefix, string rest (an fnmatch glob, or ""),
//	         uvarint module index
//	uint32   CRC-32 (IEEE, little endian) of everything before it
//
// A string is a uvarint length and that many bytes. Modules are in load
// order: every hard and "pre:" dependency has a smaller index than its
// module, so the dependency graph is acyclic by construction and the
// reader checks it. An alias pattern is split at its first wildcard:
// "pci:v00001AF4d*sv*" is prefix "pci:v00001AF4d" and rest "*sv*", so
// most patterns are rejected by a prefix compare. Aliases are sorted by
// prefix.

// tableMagic starts every module table; its last byte is the version.
const tableMagic = "DRKMODT\x01"

// FlagAlways marks a module the init loads whatever devices it finds: the
// filesystems and the modules asked for by name.
const FlagAlways = 1 << 0

// TableModule is one module of a Table.
type TableModule struct {
	Name  string
	Path  string // relative to /lib/modules/KVER
	Flags byte
	Deps  []int // hard dependencies (modules.dep), indices below this one
	Pre   []int // "pre:" soft dependencies, indices below this one
	Post  []int // "post:" soft dependencies, loaded after it
}

// Always says whether the module is loaded whatever the hardware.
func (m TableModule) Always() bool { return m.Flags&FlagAlways != 0 }

// TableAlias is one alias pattern, split at its first wildcard.
type TableAlias struct {
	Prefix string // literal part
	Rest   string // glob matched against what follows the prefix; "" matches only ""
	Module int
}

// Table is the module table of an initramfs.
type Table struct {
	Modules []TableModule
	Aliases []TableAlias
}

// SplitPattern splits an alias glob at its first wildcard character.
func SplitPattern(pattern string) (prefix, rest string) {
	i := strings.IndexAny(pattern, "*?[\\")
	if i < 0 {
		return pattern, ""
	}
	return pattern[:i], pattern[i:]
}

// Encode returns the table in the on-disk format.
func (t *Table) Encode() []byte {
	b := []byte(tableMagic)
	putInts := func(xs []int) {
		b = binary.AppendUvarint(b, uint64(len(xs)))
		for _, x := range xs {
			b = binary.AppendUvarint(b, uint64(x))
		}
	}
	putString := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Modules)))
	for _, m := range t.Modules {
		putString(m.Name)
		putString(m.Path)
		b = append(b, m.Flags)
		putInts(m.Deps)
		putInts(m.Pre)
		putInts(m.Post)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Aliases)))
	for _, a := range t.Aliases {
		putString(a.Prefix)
		putString(a.Rest)
		b = binary.AppendUvarint(b, uint64(a.Module))
	}
	return appendChecksum(b)
}

// appendChecksum appends the trailer: the CRC-32 of b.
func appendChecksum(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// TableError is a module table that cannot be read.
type TableError struct {
	Offset int // byte offset of the problem
	Reason string
}

func (e *TableError) Error() string {
	return fmt.Sprintf("module table: %s (at byte %d)", e.Reason, e.Offset)
}

// maxTableEntries bounds counts read from a table before allocating, far
// above any kernel's module or alias count.
const maxTableEntries = 1 << 20

type tableReader struct {
	b   []byte
	off int
	err error
}

func (r *tableReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = &TableError{Offset: r.off, Reason: fmt.Sprintf(format, args...)}
	}
}

func (r *tableReader) uvarint(what string) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || v > maxTableEntries*64 {
		r.fail("bad %s", what)
		return 0
	}
	r.off += n
	return int(v)
}

func (r *tableReader) count(what string) int {
	n := r.uvarint(what)
	if n > maxTableEntries || n > len(r.b)-r.off {
		r.fail("%s %d exceeds the table", what, n)
		return 0
	}
	return n
}

func (r *tableReader) string(what string) string {
	n := r.uvarint(what + " length")
	if r.err != nil {
		return ""
	}
	if n > len(r.b)-r.off {
		r.fail("%s of %d bytes exceeds the table", what, n)
		return ""
	}
	s := string(r.b[r.off : r.off+n])
	r.off += n
	return s
}

func (r *tableReader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("missing %s", what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// ints reads a list of module indices, each below limit.
func (r *tableReader) ints(what string, limit int) []int {
	n := r.count(what + " count")
	if n == 0 {
		return nil
	}
	xs := make([]int, n)
	for i := range xs {
		xs[i] = r.uvarint(what)
		if r.err == nil && xs[i] >= limit {
			r.fail("%s index %d out of range (limit %d)", what, xs[i], limit)
		}
	}
	return xs
}

// DecodeTable reads a table in the on-disk format and checks it: checksum,
// bounds, and that dependencies come before their modules.
func DecodeTable(data []byte) (*Table, error) {
	if len(data) < len(tableMagic)+4 || string(data[:len(tableMagic)-1]) != tableMagic[:len(tableMagic)-1] {
		return nil, &TableError{Reason: "not a dockroot module table (bad magic)"}
	}
	if data[len(tableMagic)-1] != tableMagic[len(tableMagic)-1] {
		return nil, &TableError{Offset: len(tableMagic) - 1, Reason: fmt.Sprintf("format version %d, this init reads %d: rebuild the initramfs with the matching dockroot",
			data[len(tableMagic)-1], tableMagic[len(tableMagic)-1])}
	}
	body := data[:len(data)-4]
	if want := binary.LittleEndian.Uint32(data[len(data)-4:]); crc32.ChecksumIEEE(body) != want {
		return nil, &TableError{Offset: len(body), Reason: "checksum mismatch (the file is damaged)"}
	}
	r := &tableReader{b: body, off: len(tableMagic)}
	t := &Table{}
	n := r.count("module count")
	t.Modules = make([]TableModule, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		m := TableModule{Name: r.string("module name"), Path: r.string("module path"), Flags: r.byte("module flags")}
		m.Deps = r.ints("dependency", i)
		m.Pre = r.ints("pre: soft dependency", i)
		m.Post = r.ints("post: soft dependency", n)
		if r.err == nil && (m.Name == "" || m.Path == "") {
			r.fail("module %d has no name or path", i)
		}
		t.Modules = append(t.Modules, m)
	}
	na := r.count("alias count")
	t.Aliases = make([]TableAlias, 0, na)
	for i := 0; i < na && r.err == nil; i++ {
		a := TableAlias{Prefix: r.string("alias prefix"), Rest: r.string("alias pattern")}
		a.Module = r.uvarint("alias module")
		if r.err == nil && a.Module >= n {
			r.fail("alias %q names module %d of %d", a.Prefix+a.Rest, a.Module, n)
		}
		t.Aliases = append(t.Aliases, a)
	}
	if r.err == nil && r.off != len(body) {
		r.fail("%d bytes after the last alias", len(body)-r.off)
	}
	if r.err != nil {
		return nil, r.err
	}
	return t, nil
}

// Lookup returns the index of the module called name, or -1.
func (t *Table) Lookup(name string) int {
	name = strings.ReplaceAll(name, "-", "_")
	for i, m := range t.Modules {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// Match returns the indices of the modules with an alias that matches
// modalias (a device's /sys/.../modalias or a uevent's MODALIAS=, or a
// name such as "fs-ext4"), each once, in table order of the aliases. The
// modalias is normalised as kmod does ('-' read as '_').
func (t *Table) Match(modalias string) []int {
	name := NormalizeAlias(modalias)
	var out []int
	for _, a := range t.Aliases {
		if !strings.HasPrefix(name, a.Prefix) {
			continue
		}
		if !Fnmatch(a.Rest, name[len(a.Prefix):]) {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == a.Module
		}
		if !dup {
			out = append(out, a.Module)
		}
	}
	return out
}

// NormalizeAlias turns '-' into '_' outside [...] classes, as kmod's
// alias_normalize does for alias patterns and for names looked up.
func NormalizeAlias(s string) string {
	if !strings.Contains(s, "-") {
		return s
	}
	b := []byte(s)
	inClass := false
	for i, c := range b {
		switch {
		case c == '[':
			inClass = true
		case c == ']':
			inClass = false
		case c == '-' && !inClass:
			b[i] = '_'
		}
	}
	return string(b)
}

// Fnmatch reports whether name matches the shell glob pattern as
// fnmatch(3) with no flags does, which is how kmod matches aliases: '*'
// and '?' match any character including '/', "[...]" is a class with
// ranges and '!' or '^' negation, and '\' quotes the next character. A
// malformed class ("[a") matches a literal '['.
func Fnmatch(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				p++
				n++
				continue
			case '[':
				if ok, next, valid := matchClass(pattern, p, name[n]); valid {
					if ok {
						p, n = next, n+1
						continue
					}
				} else if name[n] == '[' {
					p, n = p+1, n+1
					continue
				}
			case '\\':
				if p+1 < len(pattern) {
					if pattern[p+1] == name[n] {
						p, n = p+2, n+1
						continue
					}
				} else if name[n] == '\\' {
					p, n = p+1, n+1
					continue
				}
			default:
				if c == name[n] {
					p, n = p+1, n+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starN++
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchClass matches c against the class starting at pattern[p] == '['. It
// returns whether c is in it, the index after the class, and whether the
// class is well formed (has a closing ']').
func matchClass(pattern string, p int, c byte) (match bool, next int, valid bool) {
	i := p + 1
	negate := false
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(pattern) {
		lo := pattern[i]
		if lo == ']' && !first {
			return match != negate, i + 1, true
		}
		first = false
		if lo == '\\' && i+1 < len(pattern) {
			i++
			lo = pattern[i]
		}
		hi := lo
		if i+2 < len(pattern) && pattern[i+1] == '-' && pattern[i+2] != ']' {
			hi = pattern[i+2]
			if hi == '\\' && i+3 < len(pattern) {
				i++
				hi = pattern[i+2]
			}
			i += 2
		}
		if lo <= c && c <= hi {
			match = true
		}
		i++
	}
	return false, 0, false
}
