package hook

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dockroot/dockroot/internal/securejoin"
	"github.com/dockroot/dockroot/internal/testenv"
)

// tree builds files under root: "d/" is a directory, "l -> t" a symlink,
// "f*" an executable file (a static ELF stub, so exec(2) would load it),
// anything else a plain file.
func tree(t *testing.T, root string, entries ...string) {
	t.Helper()
	for _, e := range entries {
		switch {
		case strings.Contains(e, " -> "):
			name, target, _ := strings.Cut(e, " -> ")
			mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
			mustDo(t, os.Symlink(target, filepath.Join(root, name)))
		case strings.HasSuffix(e, "/"):
			mustDo(t, os.MkdirAll(filepath.Join(root, e), 0o755))
		default:
			mode, data := os.FileMode(0o644), []byte(e)
			if strings.HasSuffix(e, "*") {
				e, mode = strings.TrimSuffix(e, "*"), 0o755
				data = append(elfExecutable(""), e...)
			}
			mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(root, e)), 0o755))
			mustDo(t, os.WriteFile(filepath.Join(root, e), data, mode))
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveInit(t *testing.T) {
	root := t.TempDir()
	tree(t, root,
		"lib/systemd/systemd*",
		"sbin/init -> /lib/systemd/systemd",
		"bin/notexec",
		"bin/dir/",
		"bin/dangling -> /nowhere",
	)
	if p, err := ResolveInit(root, "/sbin/init"); err != nil || p != filepath.Join(root, "lib/systemd/systemd") {
		t.Errorf("ResolveInit(/sbin/init) = %q, %v", p, err)
	}
	for _, bad := range []string{"/bin/notexec", "/bin/dir", "/bin/dangling", "/bin/none", "sbin/init"} {
		if _, err := ResolveInit(root, bad); err == nil {
			t.Errorf("ResolveInit(%s) accepted it", bad)
		} else if !strings.Contains(err.Error(), "init") {
			t.Errorf("ResolveInit(%s): %v does not say what to do", bad, err)
		}
	}
	// A missing init (or one behind a dangling link) is a mistake in init=
	// or the image: the message says to set init=.
	for _, missing := range []string{"/bin/dangling", "/bin/none", "/no/such/init"} {
		if _, err := ResolveInit(root, missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "set init=") {
			t.Errorf("ResolveInit(%s) = %v; want ErrNotExist and a hint to set init=", missing, err)
		}
	}
}

// elfExecutable returns a minimal x86-64 ELF executable: one PT_LOAD,
// and a PT_INTERP naming interp unless interp is "" (a static binary).
// Only its headers matter: ResolveInit reads what the kernel's
// load_elf_binary reads before it opens the interpreter.
func elfExecutable(interp string) []byte {
	var progs []elf.Prog64
	off := uint64(binary.Size(elf.Header64{}))
	dataOff := off + uint64(binary.Size(elf.Prog64{}))*2
	if interp != "" {
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R),
			Off: dataOff, Filesz: uint64(len(interp) + 1), Memsz: uint64(len(interp) + 1), Align: 1})
	}
	progs = append(progs, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: 0x400000, Paddr: 0x400000, Filesz: dataOff, Memsz: dataOff, Align: 0x1000})
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x400000, Phoff: off, Ehsize: uint16(off),
		Phentsize: uint16(binary.Size(elf.Prog64{})), Phnum: uint16(len(progs)),
		Shentsize: uint16(binary.Size(elf.Section64{})),
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, progs)
	for uint64(b.Len()) < dataOff {
		b.WriteByte(0)
	}
	if interp != "" {
		b.WriteString(interp + "\x00")
	}
	return b.Bytes()
}

// hostDynamicTrue returns the host's /bin/true and its ELF interpreter,
// or skips t when it is not a dynamically linked ELF (Debian's is, with
// /lib64/ld-linux-x86-64.so.2).
func hostDynamicTrue(t *testing.T) (data []byte, interp string) {
	t.Helper()
	f, err := elf.Open("/bin/true")
	if err != nil {
		t.Skipf("host /bin/true: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Skipf("host /bin/true: read PT_INTERP: %v", err)
			}
			data, err := os.ReadFile("/bin/true")
			mustDo(t, err)
			return data, strings.TrimRight(string(b), "\x00")
		}
	}
	t.Skip("host /bin/true is statically linked")
	return nil, ""
}

// initCase is a row of the init table: an init= and what exec(2) does
// with it in the root execRoot builds.
type initCase struct {
	init string
	want string // the file's path relative to root; "" for a failure
	err  error  // the errno exec would fail with
	msg  string // part of the message: the component that failed
}

// execRoot builds a root for the init table and returns it with the table.
func execRoot(t *testing.T) (string, []initCase) {
	root := t.TempDir()
	tree(t, root,
		"sbin/real*",
		"lib/systemd/systemd*",
		"sbin/init -> /lib/systemd/systemd",
		"sbin/clamped -> ../../../sbin/real",
		"sbin/trailing -> /sbin/real/",
		"file",
		"bin/notexec",
		"bin/dir/",
		"loop/a -> b", "loop/b -> a",
		"abs/1 -> /abs/2", "abs/2 -> /abs/x/3", "abs/x/3 -> /sbin/real",
		"lnk -> /deep/dir", "deep/dir/", "deep/init*",
		"via-file -> /file/x",
	)
	// l0 -> l1 -> ... -> l40 -> /sbin/real: from l1 that is 40 links, the
	// kernel's limit; from l0 41.
	for i := 0; i < 40; i++ {
		tree(t, root, "links/l"+strconv.Itoa(i)+" -> l"+strconv.Itoa(i+1))
	}
	tree(t, root, "links/l40 -> /sbin/real")
	write := func(p string, data []byte, mode os.FileMode) {
		mustDo(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		mustDo(t, os.WriteFile(filepath.Join(root, p), data, mode))
	}
	write("lib/ld-test.so.1", elfExecutable(""), 0o755)
	write("lib/ld-noexec.so.1", elfExecutable(""), 0o644)
	write("bin/dyn", elfExecutable("/lib/ld-test.so.1"), 0o755)
	write("bin/dyn-missing", elfExecutable("/lib/ld-missing.so.1"), 0o755)
	write("bin/dyn-through-file", elfExecutable("/file/../lib/ld-test.so.1"), 0o755)
	write("bin/dyn-noexec", elfExecutable("/lib/ld-noexec.so.1"), 0o755)
	write("bin/script", []byte("#!/sbin/real -x\necho hi\n"), 0o755)
	write("bin/script-tab", []byte("#! \t/bin/../sbin/real\t\n"), 0o755)
	write("bin/script-missing", []byte("#!/bin/missing\n"), 0o755)
	write("bin/script-noexec", []byte("#!/bin/notexec\n"), 0o755)
	write("bin/script-empty", []byte("#!  \n"), 0o755)
	write("bin/text", []byte("echo not a script\n"), 0o755)
	write("bin/zero", nil, 0o755)

	return root, []initCase{
		{init: "/sbin/real", want: "sbin/real"},
		{init: "/sbin/init", want: "lib/systemd/systemd"},
		{init: "/sbin/./init", want: "lib/systemd/systemd"},
		{init: "//sbin//init", want: "lib/systemd/systemd"},
		{init: "/sbin/clamped", want: "sbin/real"}, // ".." stops at the root
		{init: "/abs/1", want: "sbin/real"},        // absolute targets restart at the root
		{init: "/lnk/../init", want: "deep/init"},  // ".." after a symlink is taken from its target
		{init: "/links/l1", want: "sbin/real"},     // 40 links
		{init: "/bin/dyn", want: "bin/dyn"},
		{init: "/bin/script", want: "bin/script"},
		{init: "/bin/script-tab", want: "bin/script-tab"},

		{init: "/nonexist/../sbin/real", err: syscall.ENOENT, msg: "/nonexist: no such file or directory"},
		{init: "/file/../sbin/real", err: syscall.ENOTDIR, msg: "/file: not a directory"},
		{init: "/sbin/real/.", err: syscall.ENOTDIR, msg: "/sbin/real: not a directory"},
		{init: "/sbin/real/", err: syscall.ENOTDIR, msg: "/sbin/real: not a directory"},
		{init: "/sbin/real/..", err: syscall.ENOTDIR, msg: "/sbin/real: not a directory"},
		{init: "/sbin/init/", err: syscall.ENOTDIR, msg: "/lib/systemd/systemd: not a directory"},
		{init: "/sbin/trailing", err: syscall.ENOTDIR, msg: "/sbin/real: not a directory"},
		{init: "/via-file", err: syscall.ENOTDIR, msg: "/file: not a directory"},
		{init: "/sbin/nosuch", err: syscall.ENOENT, msg: "no such file or directory"},
		{init: "/no/such/init", err: syscall.ENOENT, msg: "/no: no such file or directory"},
		{init: "/loop/a", err: syscall.ELOOP, msg: "too many levels of symbolic links"},
		{init: "/links/l0", err: syscall.ELOOP, msg: "too many levels of symbolic links"},
		{init: "/bin/notexec", err: syscall.EACCES, msg: "is not an executable file"},
		{init: "/bin/dir", err: syscall.EACCES, msg: "is not an executable file"},
		{init: "/bin/text", err: syscall.ENOEXEC, msg: "neither an ELF executable nor a #! script"},
		{init: "/bin/zero", err: syscall.ENOEXEC, msg: "neither an ELF executable nor a #! script"},
		{init: "/bin/dyn-missing", err: syscall.ENOENT, msg: "ELF interpreter /lib/ld-missing.so.1"},
		{init: "/bin/dyn-through-file", err: syscall.ENOTDIR, msg: "ELF interpreter /file/../lib/ld-test.so.1: /file: not a directory"},
		{init: "/bin/dyn-noexec", err: syscall.EACCES, msg: "ELF interpreter /lib/ld-noexec.so.1"},
		{init: "/bin/script-missing", err: syscall.ENOENT, msg: "#! interpreter /bin/missing"},
		{init: "/bin/script-noexec", err: syscall.EACCES, msg: "#! interpreter /bin/notexec"},
		{init: "/bin/script-empty", err: syscall.ENOEXEC, msg: "#!"},
	}
}

// TestResolveInitLikeExec checks ResolveInit against what execve(2) of
// PID 1 does after switch_root: the path walk of the kernel (ENOENT at the
// first missing component and ENOTDIR at the first non-directory, before
// any ".." is applied; symlinks inside the root; at most 40 of them), the
// permission check (a regular file with an x bit) and the loaders (an
// ELF's PT_INTERP, a script's #! interpreter), so that nothing that would
// fail at exec passes the check made before the commit.
func TestResolveInitLikeExec(t *testing.T) {
	root, cases := execRoot(t)
	forEachResolver(t, "table", func(t *testing.T) {
		for _, tc := range cases {
			got, err := ResolveInit(root, tc.init)
			if tc.err == nil {
				if err != nil || got != filepath.Join(root, tc.want) {
					t.Errorf("ResolveInit(%s) = %q, %v; want %s", tc.init, got, err, tc.want)
				}
				continue
			}
			switch {
			case err == nil:
				t.Errorf("ResolveInit(%s) = %q; want %v, as exec would fail", tc.init, got, tc.err)
			case !errors.Is(err, tc.err):
				t.Errorf("ResolveInit(%s) = %v; want %v", tc.init, err, tc.err)
			case !strings.Contains(err.Error(), "init "+tc.init+" in the new root") || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "set init="):
				t.Errorf("ResolveInit(%s) = %v; want it to name the init, %q, and what to set", tc.init, err, tc.msg)
			}
		}
	})

	// A real dynamically linked program: fails without its loader, passes
	// with it.
	data, interp := hostDynamicTrue(t)
	dyn := t.TempDir()
	tree(t, dyn, "sbin/")
	mustDo(t, os.WriteFile(filepath.Join(dyn, "sbin/init"), data, 0o755))
	forEachResolver(t, "host /bin/true without its loader", func(t *testing.T) {
		if _, err := ResolveInit(dyn, "/sbin/init"); !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "ELF interpreter "+interp) {
			t.Errorf("ResolveInit(/sbin/init = host /bin/true) without %s = %v; want ENOENT naming the interpreter", interp, err)
		}
	})
	mustDo(t, os.MkdirAll(filepath.Join(dyn, filepath.Dir(interp)), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(dyn, interp), elfExecutable(""), 0o755))
	forEachResolver(t, "host /bin/true with its loader", func(t *testing.T) {
		if _, err := ResolveInit(dyn, "/sbin/init"); err != nil {
			t.Errorf("ResolveInit(/sbin/init = host /bin/true) with %s: %v", interp, err)
		}
	})
}

// TestResolveInitAgreesWithExec asks the kernel itself: for every row of
// the init table, a child chroots into the root and execs the init, and
// exec must fail with the errno ResolveInit names, or succeed where
// ResolveInit passes. What runs after a successful exec (a stub ELF) is
// killed at once. Root tier: chroot needs uid 0.
func TestResolveInitAgreesWithExec(t *testing.T) {
	testenv.RequireRoot(t)
	root, cases := execRoot(t)
	for _, tc := range cases {
		_, err := ResolveInit(root, tc.init)
		cmd := exec.Command(tc.init)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
		xerr := cmd.Start()
		if xerr == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		switch {
		case xerr == nil && err != nil:
			t.Errorf("%s: exec works in the root, but ResolveInit refuses it: %v", tc.init, err)
		case xerr != nil && err == nil:
			t.Errorf("%s: ResolveInit accepts it, but exec fails: %v", tc.init, xerr)
		case xerr != nil && !errors.Is(xerr, tc.err):
			t.Errorf("%s: exec fails with %v; the table says %v", tc.init, xerr, tc.err)
		}
	}
}

// forEachResolver runs fn as a subtest, name via each way ResolveInit can look
// a path up: openat2(RESOLVE_IN_ROOT), and the walk kernels before 5.6 get.
func forEachResolver(t *testing.T, name string, fn func(t *testing.T)) {
	t.Helper()
	for _, r := range []struct {
		name string
		open func(root, rel string, flags int) (*os.File, error)
	}{{"openat2", securejoin.OpenInRoot}, {"walk", securejoin.WalkInRoot}} {
		t.Run(name+" via "+r.name, func(t *testing.T) {
			saved := openInRoot
			openInRoot = r.open
			defer func() { openInRoot = saved }()
			fn(t)
		})
	}
}

func TestMkdirInRoot(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	tree(t, root, "dev/", "var/", "run -> /var/run", "proc -> "+outside, "sys", "etc/mnt -> ../../../mnt", "loop -> loop")
	for _, tc := range []struct {
		path, want string // want relative to root, "" for an error
	}{
		{"/dev", "dev"},
		{"/run", "var/run"}, // created inside the root, through the symlink
		{"/tmp", "tmp"},
		{"/proc", ""},       // points at a path whose parents do not exist inside the root
		{"/sys", ""},        // a file
		{"/etc/mnt", "mnt"}, // ".." stops at the root
		{"/loop", ""},       // a symlink loop
		{"/nope/x", ""},     // the parent must exist
	} {
		got, err := MkdirInRoot(root, tc.path)
		if tc.want == "" {
			if err == nil {
				t.Errorf("MkdirInRoot(%s) = %q, want an error", tc.path, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("MkdirInRoot(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
		if fi, err := os.Stat(got); err != nil || !fi.IsDir() {
			t.Errorf("MkdirInRoot(%s): %s is not a directory", tc.path, got)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("MkdirInRoot wrote outside the root: %v", entries)
	}
}

func TestFreeTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	tree(t, outside, "keep/me", "keep/sub/too")
	tree(t, root,
		"init*",
		"etc/dockroot.json",
		"lib/modules/6.1/kernel/btrfs.ko",
		"bin/sh -> /bin/busybox",
		"escape -> "+outside+"/keep", // a symlink out: unlinked, never followed
		"newroot/usr/bin/app",        // the new root's mount point: skipped
		"mnt/other/data",             // faked as another device
		"empty/",
	)
	rootDev, err := devOfPath(root)
	mustDo(t, err)
	other := filepath.Join(root, "mnt", "other")
	opts := FreeOptions{
		RootDev: rootDev,
		Skip:    filepath.Join(root, "newroot"),
		DevOf: func(path string, fi fs.FileInfo) (uint64, error) {
			if path == other {
				return rootDev + 1, nil
			}
			return devOf(path, fi)
		},
	}
	n, err := FreeTree(root, opts)
	if err != nil {
		t.Fatalf("FreeTree: %v", err)
	}
	var left []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if p != root {
			left = append(left, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	sort.Strings(left)
	want := []string{"mnt", "mnt/other", "mnt/other/data", "newroot", "newroot/usr", "newroot/usr/bin", "newroot/usr/bin/app"}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("left after FreeTree:\n%v\nwant\n%v", left, want)
	}
	if n == 0 {
		t.Error("FreeTree reports nothing removed")
	}
	for _, p := range []string{"keep/me", "keep/sub/too"} {
		if _, err := os.Stat(filepath.Join(outside, p)); err != nil {
			t.Errorf("FreeTree followed a symlink out of the tree: %v", err)
		}
	}
}

func TestInitEnv(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		term string
	}{
		{nil, "TERM=linux"},
		{[]string{"TERM=vt102", "docker_path=var/lib/docker"}, "TERM=vt102"},
		{[]string{"TERM="}, "TERM=linux"},
	} {
		env := InitEnv(tc.in)
		joined := strings.Join(env, " ")
		if !strings.Contains(joined, tc.term) || !strings.Contains(joined, "HOME=/") || !strings.Contains(joined, "PATH=/usr/local/sbin:") {
			t.Errorf("InitEnv(%q) = %q", tc.in, env)
		}
		if strings.Contains(joined, "docker_path") {
			t.Errorf("InitEnv(%q) passes kernel parameters on: %q", tc.in, env)
		}
	}
}

func TestIsRAMFS(t *testing.T) {
	for _, tc := range []struct {
		magic int64
		want  bool
	}{
		{0x01021994, true},  // TMPFS_MAGIC
		{0x858458f6, true},  // RAMFS_MAGIC
		{0x9123683e, false}, // BTRFS_SUPER_MAGIC
		{0xef53, false},     // EXT4
	} {
		if got := isRAMFS(tc.magic); got != tc.want {
			t.Errorf("isRAMFS(%#x) = %v, want %v", tc.magic, got, tc.want)
		}
	}
}

// TestShebangInterp is fs/binfmt_script.c's reading of a #! line.
func TestShebangInterp(t *testing.T) {
	long := "#!/" + strings.Repeat("x", 253)
	for _, tc := range []struct{ line, want string }{
		{"#!/bin/sh\necho\n", "/bin/sh"},
		{"#! /bin/sh -e\n", "/bin/sh"},
		{"#!\t/usr/bin/env  python3 \n", "/usr/bin/env"},
		{"#!/bin/sh", "/bin/sh"}, // no newline: the zero padding ends it
		{"#!/bin/sh\x00junk\n", "/bin/sh"},
		{"#!bin/sh\n", "bin/sh"},
		{"#!\n", ""},
		{"#!   \t \n", ""},
		{long, ""},                      // fills the buffer: may be cut off
		{long[:255] + " ", long[2:255]}, // ends before the buffer does
	} {
		var buf [256]byte
		copy(buf[:], tc.line)
		if got := shebangInterp(buf); got != tc.want {
			t.Errorf("shebangInterp(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestELFInterp covers what load_elf_binary refuses with ENOEXEC before
// it opens the interpreter.
func TestELFInterp(t *testing.T) {
	dyn := elfExecutable("/lib/ld.so.1")
	patch := func(b []byte, off int, v ...byte) []byte {
		out := bytes.Clone(b)
		copy(out[off:], v)
		return out
	}
	phoff := binary.Size(elf.Header64{})
	for _, tc := range []struct {
		name string
		data []byte
		want string // "" and ok for static; "ERR" for ENOEXEC
	}{
		{"static", elfExecutable(""), ""},
		{"dynamic", dyn, "/lib/ld.so.1"},
		{"32-bit big-endian", elf32BE("/lib/ld.so.1"), "/lib/ld.so.1"},
		{"relocatable object", patch(dyn, 16, byte(elf.ET_REL)), "ERR"},
		{"unknown class", patch(dyn, elf.EI_CLASS, 9), "ERR"},
		{"no program headers", patch(dyn, 56, 0, 0), "ERR"},
		{"PT_INTERP not NUL-terminated", patch(dyn, len(dyn)-1, 'x'), "ERR"},
		{"PT_INTERP of one byte", patch(dyn, phoff+32, 1, 0, 0, 0, 0, 0, 0, 0), "ERR"},
		{"truncated", dyn[:phoff+8], "ERR"},
	} {
		got, err := elfInterp(bytes.NewReader(tc.data))
		if tc.want == "ERR" {
			if err == nil {
				t.Errorf("%s: elfInterp = %q; want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: elfInterp = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// elf32BE returns the headers of a 32-bit big-endian executable (a MIPS
// one) whose PT_INTERP is interp.
func elf32BE(interp string) []byte {
	hdr, ph := binary.Size(elf.Header32{}), binary.Size(elf.Prog32{})
	off := uint32(hdr + ph)
	h := elf.Header32{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_MIPS), Version: uint32(elf.EV_CURRENT),
		Phoff: uint32(hdr), Ehsize: uint16(hdr), Phentsize: uint16(ph), Phnum: 1}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS32), byte(elf.ELFDATA2MSB), byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, h)
	binary.Write(&b, binary.BigEndian, elf.Prog32{Type: uint32(elf.PT_INTERP), Off: off, Filesz: uint32(len(interp) + 1), Memsz: uint32(len(interp) + 1)})
	b.WriteString(interp + "\x00")
	return b.Bytes()
}
