package kmod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseList(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    []Module
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# header\n\n   # indented comment\n\t\n", nil, ""},
		{"plain", "kernel/fs/btrfs/btrfs.ko\n", []Module{{Path: "kernel/fs/btrfs/btrfs.ko", Line: 1}}, ""},
		{"params after tab", "a.ko\nkernel/drivers/nvme/host/nvme_core.ko\tmultipath=N  io_timeout=60 \n",
			[]Module{{Path: "a.ko", Line: 1}, {Path: "kernel/drivers/nvme/host/nvme_core.ko", Params: "multipath=N  io_timeout=60", Line: 2}}, ""},
		{"absolute and compressed", "  /lib/modules/extra/x.ko.xz\n# c\ny.ko.zst\nz.ko.gz\n",
			[]Module{{Path: "/lib/modules/extra/x.ko.xz", Line: 1}, {Path: "y.ko.zst", Line: 3}, {Path: "z.ko.gz", Line: 4}}, ""},
		{"no trailing newline", "a.ko", []Module{{Path: "a.ko", Line: 1}}, ""},
		{"CRLF", "a.ko\r\nb.ko\r\n", []Module{{Path: "a.ko", Line: 1}, {Path: "b.ko", Line: 2}}, ""},
		{"not a module", "a.ko\nbtrfs\n", nil, "line 2"},
		{"space instead of tab", "a.ko x=1\n", nil, "line 1"},
		{"params without path", "\tx=1\n", nil, "line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseList error = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseList = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestModuleNameAndCompression(t *testing.T) {
	cases := []struct{ path, name, comp string }{
		{"kernel/fs/btrfs/btrfs.ko", "btrfs", ""},
		{"kernel/drivers/usb/storage/usb-storage.ko.zst", "usb_storage", "zstd"},
		{"/x/virtio_blk.ko.xz", "virtio_blk", "xz"},
		{"crc32c-intel.ko.gz", "crc32c_intel", "gzip"},
	}
	for _, tc := range cases {
		m := Module{Path: tc.path}
		if m.Name() != tc.name || m.Compression() != tc.comp {
			t.Errorf("%s: Name %q Compression %q, want %q %q", tc.path, m.Name(), m.Compression(), tc.name, tc.comp)
		}
	}
}

// call is one finit_module the fake saw.
type call struct {
	file, params string
	flags        int
}

// fakeKernel is a temporary /lib/modules/<kver> and /sys/module, and a
// finit_module that answers from a table by file name.
type fakeKernel struct {
	root    string
	calls   []call
	answers map[string]error
	loader  *Loader
	log     []string
}

func newFakeKernel(t *testing.T, files ...string) *fakeKernel {
	root := t.TempDir()
	k := &fakeKernel{root: root, answers: map[string]error{}}
	modDir := filepath.Join(root, "lib/modules/6.1.0-test")
	for _, f := range files {
		p := f
		if !filepath.IsAbs(p) {
			p = filepath.Join(modDir, f)
		} else {
			p = filepath.Join(root, f)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("\x7fELF fake module "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/module"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.loader = &Loader{
		ModulesDir: modDir,
		SysModule:  filepath.Join(root, "sys/module"),
		Finit: func(fd int, params string, flags int) error {
			target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			if err != nil {
				return err
			}
			name := filepath.Base(target)
			k.calls = append(k.calls, call{name, params, flags})
			return k.answers[name]
		},
		Log: func(f string, a ...any) { k.log = append(k.log, fmt.Sprintf(f, a...)) },
	}
	return k
}

func (k *fakeKernel) sysModule(t *testing.T, name string, loaded bool) {
	dir := filepath.Join(k.root, "sys/module", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if loaded {
		if err := os.WriteFile(filepath.Join(dir, "initstate"), []byte("live\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

func (k *fakeKernel) list(t *testing.T, content string) string {
	p := filepath.Join(k.root, "modules.list")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadListOutcomes(t *testing.T) {
	k := newFakeKernel(t,
		"kernel/lib/libcrc32c.ko", "kernel/fs/btrfs/btrfs.ko", "kernel/drivers/ata/ahci.ko",
		"kernel/drivers/block/virtio_blk.ko.xz", "kernel/drivers/nvme/host/nvme.ko.zst",
		"kernel/drivers/scsi/sd_mod.ko", "kernel/broken.ko", "kernel/dup.ko", "/extra/abs.ko")
	if err := os.WriteFile(filepath.Join(k.root, "sys/module/compression"), []byte("xz\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	k.sysModule(t, "sd_mod", true)
	k.sysModule(t, "libcrc32c", false) // built in, with parameters
	k.answers["ahci.ko"] = unix.ENODEV
	k.answers["broken.ko"] = unix.ENOEXEC
	k.answers["dup.ko"] = unix.EEXIST
	list := k.list(t, strings.Join([]string{
		"# dockroot modules.list",
		"kernel/lib/libcrc32c.ko",
		"kernel/fs/btrfs/btrfs.ko",
		"kernel/drivers/ata/ahci.ko\tmobile_lpm_policy=1",
		"kernel/drivers/block/virtio_blk.ko.xz",
		"kernel/drivers/nvme/host/nvme.ko.zst",
		"kernel/drivers/scsi/sd_mod.ko",
		"kernel/missing.ko",
		"kernel/broken.ko",
		"kernel/dup.ko",
		filepath.Join(k.root, "extra/abs.ko"),
	}, "\n"))

	res, err := k.loader.LoadList(list)

	wantCalls := []call{
		{"btrfs.ko", "", 0},
		{"ahci.ko", "mobile_lpm_policy=1", 0},
		{"virtio_blk.ko.xz", "", unix.MODULE_INIT_COMPRESSED_FILE},
		{"broken.ko", "", 0},
		{"dup.ko", "", 0},
		{"abs.ko", "", 0},
	}
	if !reflect.DeepEqual(k.calls, wantCalls) {
		t.Errorf("finit_module calls:\n got %v\nwant %v", k.calls, wantCalls)
	}
	wantRes := Result{
		Loaded:   {"btrfs", "virtio_blk", "abs"},
		Present:  {"sd_mod", "dup"},
		BuiltIn:  {"libcrc32c"},
		NoDevice: {"ahci"},
		Failed:   {"nvme", "missing", "broken"},
	}
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("result:\n got %v\nwant %v", res, wantRes)
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Total != 10 || len(le.Failures) != 3 {
		t.Fatalf("error = %v, want a LoadError with 3 of 10 failures", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"3 of 10 kernel modules failed",
		"nvme: ", "zstd-compressed but this kernel decompresses only xz",
		"missing: open module file (list line 8)",
		"broken: finit_module", "exec format error", "wrong architecture or version magic",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if len(k.log) != 10 {
		t.Errorf("want one log line per module, got %q", k.log)
	}
}

func TestLoadListWithoutList(t *testing.T) {
	k := newFakeKernel(t)
	res, err := k.loader.LoadList(filepath.Join(k.root, "nope.list"))
	if err != nil || len(res) != 0 || len(k.log) != 1 || !strings.Contains(k.log[0], "no module list") {
		t.Fatalf("LoadList(missing) = %v, %v, log %q", res, err, k.log)
	}
}

func TestLoadListBadListIsAnError(t *testing.T) {
	k := newFakeKernel(t)
	_, err := k.loader.LoadList(k.list(t, "a.ko\nnot a module\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error = %v, want a parse error naming line 2", err)
	}
	if len(k.calls) != 0 {
		t.Errorf("loaded %v from a malformed list", k.calls)
	}
}

// Without module support every load fails the same way: stop at the first.
func TestLoadListStopsWithoutModuleSupport(t *testing.T) {
	k := newFakeKernel(t, "a.ko", "b.ko")
	k.answers["a.ko"] = unix.ENOSYS
	_, err := k.loader.LoadList(k.list(t, "a.ko\nb.ko\n"))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_MODULES") || len(k.calls) != 1 {
		t.Fatalf("error = %v after calls %v", err, k.calls)
	}
}

func TestMissingModuleNamesKernelMismatch(t *testing.T) {
	k := newFakeKernel(t)
	if err := os.MkdirAll(filepath.Join(k.root, "lib/modules/6.1.0-built"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.loader.ModulesDir = filepath.Join(k.root, "lib/modules/6.9.0-running")
	_, err := k.loader.Load(Module{Path: "kernel/fs/btrfs/btrfs.ko", Line: 3})
	for _, want := range []string{"running kernel is 6.9.0-running", "modules for 6.1.0-built", "--kernel-version 6.9.0-running"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to contain %q", err, want)
		}
	}
}

func TestHints(t *testing.T) {
	cases := []struct {
		err   error
		flags int
		want  string
	}{
		{unix.ENOEXEC, 0, "version magic"},
		{unix.ENOENT, 0, "unknown symbol"},
		{unix.EKEYREJECTED, 0, "signature"},
		{unix.ENOKEY, 0, "signature"},
		{unix.EPERM, 0, "CAP_SYS_MODULE"},
		{unix.EINVAL, unix.MODULE_INIT_COMPRESSED_FILE, "CONFIG_MODULE_DECOMPRESS"},
		{unix.EINVAL, 0, ""},
		{errors.New("not an errno"), 0, ""},
	}
	for _, tc := range cases {
		got := hint(tc.err, tc.flags)
		if (tc.want == "" && got != "") || !strings.Contains(got, tc.want) {
			t.Errorf("hint(%v, %d) = %q, want %q", tc.err, tc.flags, got, tc.want)
		}
	}
}
