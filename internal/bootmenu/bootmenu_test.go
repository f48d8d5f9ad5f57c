package bootmenu

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// installFake makes what `dockroot install` leaves for ref in bootDir.
func installFake(t *testing.T, bootDir, ref, kver string) Installed {
	t.Helper()
	dir := InstalledDir(bootDir, ref)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{KernelFile, InitrdFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("fake "+f+" of "+ref), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := Installed{Ref: ref, ImageID: "sha256:" + strings.Repeat("ab", 32), KernelVersion: kver,
		Installed: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if _, err := WriteInstalled(bootDir, in); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"desk:stable", "desk-stable"},
		{"ghcr.io/me/desk:1.0", "ghcr.io_me_desk-1.0"},
		{"localhost:5000/team/app:v2_rc", "localhost-5000_team_app-v2_rc"},
		{"desk:Testing", "desk-testing"},
		{"desk@sha256:0123abcd", "desk-sha256-0123abcd"},
		{"it's a $tag", "it-s-a--tag"},
		{"ünï:cödé", "-n--c-d-"},
		{"..", "-"},
	} {
		if got := Slug(tc.ref); got != tc.want {
			t.Errorf("Slug(%q) = %q, want %q", tc.ref, got, tc.want)
		}
		if got := Slug(tc.ref); !idSafe(got) || !loaderSafe(got) {
			t.Errorf("Slug(%q) = %q is not filename- and loader-safe", tc.ref, got)
		}
	}
}

func TestInstalledRoundTrip(t *testing.T) {
	boot := t.TempDir()
	b := installFake(t, boot, "desk:testing", "6.1.0-2-amd64")
	a := installFake(t, boot, "desk:stable", "6.1.0-1-amd64")
	// Not dockroot's: no entry.json. A stray file is ignored too.
	if err := os.MkdirAll(filepath.Join(boot, "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, "README"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := ReadInstalled(boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("ReadInstalled = %+v, want 2 entries", got)
	}
	for i, want := range []Installed{a, b} {
		g := got[i]
		if g.Ref != want.Ref || g.ImageID != want.ImageID || g.KernelVersion != want.KernelVersion ||
			g.Kernel != KernelFile || g.Initrd != InitrdFile || !g.Installed.Equal(want.Installed) || g.Dir != Slug(want.Ref) {
			t.Errorf("entry %d = %+v, want %+v in %s", i, g, want, Slug(want.Ref))
		}
	}
	// Installing again (idempotent install) keeps one entry.
	installFake(t, boot, "desk:stable", "6.1.0-3-amd64")
	got, err = ReadInstalled(boot)
	if err != nil || len(got) != 2 || got[0].KernelVersion != "6.1.0-3-amd64" {
		t.Fatalf("after reinstall: %+v, %v", got, err)
	}
}

// ReadEntry reads one directory: the record as written, its directory
// name, and ErrNotExist for a directory that is not an install.
func TestReadEntry(t *testing.T) {
	boot := t.TempDir()
	want := installFake(t, boot, "ghcr.io/me/desk:1.0", "6.1.0-1-amd64")
	got, err := ReadEntry(InstalledDir(boot, want.Ref))
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != want.Ref || got.ImageID != want.ImageID || got.KernelVersion != want.KernelVersion ||
		got.Kernel != KernelFile || got.Initrd != InitrdFile || got.Dir != "ghcr.io_me_desk-1.0" {
		t.Errorf("ReadEntry = %+v, want %+v in ghcr.io_me_desk-1.0", got, want)
	}
	empty := filepath.Join(boot, "grub")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEntry(empty); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadEntry of a directory without %s: %v, want not exist", EntryFile, err)
	}
	p := filepath.Join(InstalledDir(boot, want.Ref), EntryFile)
	for name, data := range map[string]string{
		"unknown field": `{"schema":1,"ref":"a:1","kernel":"vmlinuz","initrd":"initramfs.img","extra":1}`,
		"no ref":        `{"schema":1,"kernel":"vmlinuz","initrd":"initramfs.img"}`,
		"bad initrd":    `{"schema":1,"ref":"a:1","kernel":"vmlinuz","initrd":"/etc/shadow"}`,
		"not JSON":      `schema: 1`,
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEntry(filepath.Dir(p)); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: ReadEntry error %v, want one naming %s", name, err, p)
		}
	}
}

func TestInstalledErrors(t *testing.T) {
	t.Run("case collision on FAT", func(t *testing.T) {
		boot := t.TempDir()
		installFake(t, boot, "desk:stable", "6.1")
		_, err := WriteInstalled(boot, Installed{Ref: "desk:Stable"})
		if err == nil || !strings.Contains(err.Error(), "already holds desk:stable") {
			t.Fatalf("err = %v, want a refusal naming desk:stable", err)
		}
	})
	t.Run("kernel not copied yet", func(t *testing.T) {
		boot := t.TempDir()
		if err := os.MkdirAll(InstalledDir(boot, "a:1"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := WriteInstalled(boot, Installed{Ref: "a:1"})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want not exist", err)
		}
		if _, err := os.Stat(filepath.Join(InstalledDir(boot, "a:1"), EntryFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("entry.json written without a kernel: %v", err)
		}
	})
	t.Run("kernel removed later", func(t *testing.T) {
		boot := t.TempDir()
		installFake(t, boot, "a:1", "6.1")
		if err := os.Remove(filepath.Join(InstalledDir(boot, "a:1"), KernelFile)); err != nil {
			t.Fatal(err)
		}
		_, err := ReadInstalled(boot)
		if err == nil || !strings.Contains(err.Error(), "dockroot install a:1 --boot-dir "+boot) {
			t.Fatalf("err = %v, want the install command", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		boot := t.TempDir()
		installFake(t, boot, "a:1", "6.1")
		p := filepath.Join(InstalledDir(boot, "a:1"), EntryFile)
		if err := os.WriteFile(p, []byte(`{"schema":2,"ref":"a:1","kernel":"vmlinuz","initrd":"initramfs.img"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadInstalled(boot); err == nil || !strings.Contains(err.Error(), "schema 2") {
			t.Fatalf("err = %v, want a schema error", err)
		}
	})
	t.Run("path in file name", func(t *testing.T) {
		boot := t.TempDir()
		installFake(t, boot, "a:1", "6.1")
		p := filepath.Join(InstalledDir(boot, "a:1"), EntryFile)
		if err := os.WriteFile(p, []byte(`{"schema":1,"ref":"a:1","kernel":"../../etc/passwd","initrd":"initramfs.img"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadInstalled(boot); err == nil || !strings.Contains(err.Error(), "plain file name") {
			t.Fatalf("err = %v, want a file name error", err)
		}
	})
	t.Run("missing boot dir", func(t *testing.T) {
		_, err := ReadInstalled(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
}

func sampleParams() Params {
	return Params{
		Root: "LABEL=linux", RWLayer: "@/docker_rwlayer", DockerPath: "@/var/lib/docker",
		Toplayer: "LABEL=top", ToplayerPath: "machines/desk one",
		LoaderPath: "/dockroot", Extra: []string{"quiet", "console=ttyS0,115200"},
	}
}

func sampleInstalled() []Installed {
	return []Installed{
		{Ref: "desk:stable", ImageID: "sha256:aa", KernelVersion: "6.1.0-28-amd64", Kernel: KernelFile, Initrd: InitrdFile},
		{Ref: "desk:testing", ImageID: "sha256:bb", KernelVersion: "6.12.9-amd64", Kernel: KernelFile, Initrd: InitrdFile},
		{Ref: "ghcr.io/me/desk:1.0", ImageID: "sha256:cc", KernelVersion: "6.1.0-28-amd64", Kernel: KernelFile, Initrd: InitrdFile},
	}
}

// oddEntries have the titles a user can give through tags and options
// that need quoting.
func oddEntries() []Entry {
	return []Entry{
		{ID: "dockroot-quote", Title: `it's "quoted" desk`, Version: "6.1", Kernel: "/d/q/vmlinuz", Initrd: "/d/q/initramfs.img",
			Options: []string{"root=LABEL=linux", "rootflags=subvol=rw", "toplayer_path=my top", "x=$HOME", "y='s'", `z=back\slash`}, Default: true, SortKey: "a"},
		{ID: "dockroot-dollar", Title: "cost $5 {braces} ; semi # hash \\ back", Version: "6.1", Kernel: "/d/v/vmlinuz", Initrd: "/d/v/initramfs.img",
			Options: []string{"root=LABEL=linux", "a=b,c", "#x", "{y}"}},
		{ID: "dockroot-unicode", Title: "bureau ünïcödé 桌面 ✓", Version: "6.1", Kernel: "/d/u/vmlinuz", Initrd: "/d/u/initramfs.img",
			Options: []string{"root=LABEL=linux", "desc=ünï cödé"}},
	}
}

func TestEntries(t *testing.T) {
	es, err := Entries(sampleInstalled(), sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 4 {
		t.Fatalf("got %d entries, want 3 tags + previous", len(es))
	}
	for i, ref := range []string{"desk:stable", "desk:testing", "ghcr.io/me/desk:1.0"} {
		e := es[i]
		if e.Ref != ref || e.ID != "dockroot-"+Slug(ref) || e.Kernel != "/dockroot/"+Slug(ref)+"/vmlinuz" || e.Initrd != "/dockroot/"+Slug(ref)+"/initramfs.img" {
			t.Errorf("entry %d = %+v", i, e)
		}
		cl := parse(t, e.Options)
		for k, v := range map[string]string{"root": "LABEL=linux", "rootflags": "subvol=@/docker_rwlayer", "docker_path": "@/var/lib/docker",
			"docker_image": ref, "toplayer": "LABEL=top", "toplayer_path": "machines/desk one", "console": "ttyS0,115200"} {
			if got, _ := cl.Get(k); got != v {
				t.Errorf("entry %s: %s=%q, want %q", e.ID, k, got, v)
			}
		}
		if _, ok := cl.Get("dockroot.layer"); ok {
			t.Errorf("entry %s boots a fresh layer but has dockroot.layer=", e.ID)
		}
		if e.Default != (i == 0) {
			t.Errorf("entry %s Default = %v", e.ID, e.Default)
		}
	}
	prev := es[3]
	cl := parse(t, prev.Options)
	if v, _ := cl.Get("dockroot.layer"); v != "previous" || !prev.Previous || prev.Kernel != es[0].Kernel || prev.Default {
		t.Errorf("previous entry = %+v", prev)
	}
	if v, _ := cl.Get("rootflags"); v != "subvol=@/docker_rwlayer" {
		t.Errorf("previous entry rootflags=%q: it must name the layer family NAME", v)
	}

	p := sampleParams()
	p.Default = "desk:testing"
	es, err = Entries(sampleInstalled(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !es[1].Default || es[0].Default || es[3].Kernel != es[1].Kernel || es[1].SortKey >= es[0].SortKey {
		t.Errorf("with default desk:testing: %+v", es)
	}
}

func TestEntriesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []Installed
		mod  func(*Params)
		want string
	}{
		{"nothing installed", nil, func(*Params) {}, "no installed kernels"},
		{"no root", sampleInstalled(), func(p *Params) { p.Root = "" }, "root="},
		{"no layer", sampleInstalled(), func(p *Params) { p.RWLayer = "" }, "rootflags=subvol="},
		{"unknown default", sampleInstalled(), func(p *Params) { p.Default = "desk:old" }, "installed: desk:stable, desk:testing"},
		{"loader path with space", sampleInstalled(), func(p *Params) { p.LoaderPath = "/my boot" }, "loader path"},
		{"relative loader path", sampleInstalled(), func(p *Params) { p.LoaderPath = "dockroot" }, "loader path"},
		{"quote in param", sampleInstalled(), func(p *Params) { p.Extra = []string{`a="b"`} }, "double quote"},
		{"newline in param", sampleInstalled(), func(p *Params) { p.ToplayerPath = "a\nb" }, "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sampleParams()
			tc.mod(&p)
			_, err := Entries(tc.in, p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func parse(t *testing.T, opts []string) *config.Cmdline {
	t.Helper()
	s, err := KernelCmdline(opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := config.ParseCmdline(s)
	if err != nil {
		t.Fatalf("ParseCmdline(%q): %v", s, err)
	}
	return cl
}

func TestKernelCmdline(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
		err  string
	}{
		{[]string{"root=LABEL=x", "rw"}, "root=LABEL=x rw", ""},
		{[]string{"toplayer_path=my dir", "quiet"}, `toplayer_path="my dir" quiet`, ""},
		{[]string{"a=tab\there"}, "a=\"tab\there\"", ""},
		{[]string{"bare word"}, `"bare word"`, ""},
		{[]string{"x=$HOME", "y='s'", `z=back\slash`}, `x=$HOME y='s' z=back\slash`, ""},
		{[]string{"u=ünï cödé"}, `u="ünï cödé"`, ""},
		{[]string{`a="b"`}, "", "double quote"},
		{[]string{""}, "", "empty"},
		{[]string{"=x"}, "", "name"},
		{[]string{"a=\x01"}, "", "control"},
	} {
		got, err := KernelCmdline(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("KernelCmdline(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("KernelCmdline(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		// The kernel's own reading (config follows next_arg) gives back
		// exactly the parameters.
		cl, err := config.ParseCmdline(got)
		if err != nil {
			t.Fatalf("ParseCmdline(%q): %v", got, err)
		}
		var back []string
		for _, p := range cl.Params {
			s := p.Key
			if p.HasValue {
				s += "=" + p.Value
			}
			back = append(back, s)
		}
		if strings.Join(back, "\x00") != strings.Join(tc.in, "\x00") {
			t.Errorf("kernel reads %q back as %q, want %q", got, back, tc.in)
		}
	}
}

func renderGolden(t *testing.T, es []Entry) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	var b bytes.Buffer
	if err := RenderGRUB(&b, es, GRUBScript); err != nil {
		t.Fatal(err)
	}
	out["grub.d"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	if err := RenderGRUB(&b, es, GRUBConfig); err != nil {
		t.Fatal(err)
	}
	out["grub.cfg"] = append([]byte(nil), b.Bytes()...)
	b.Reset()
	if err := RenderRefind(&b, es); err != nil {
		t.Fatal(err)
	}
	out["refind.conf"] = append([]byte(nil), b.Bytes()...)
	files, err := RenderBLS(es)
	if err != nil {
		t.Fatal(err)
	}
	out["bls"] = concatFiles(files)
	return out
}

// concatFiles joins BLS files in name order with a header per file.
func concatFiles(files map[string][]byte) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString("==> " + n + " <==\n")
		b.Write(files[n])
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	sample, err := Entries(sampleInstalled(), sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	for set, es := range map[string][]Entry{"sample": sample, "odd": oddForAll()} {
		for kind, got := range renderGolden(t, es) {
			name := filepath.Join("testdata", set+"."+kind+".golden")
			if *update {
				if err := os.WriteFile(name, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(name)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the output:\n%s\n(run go test ./internal/bootmenu -update and review the diff)", name, got)
			}
		}
	}
}

// oddForAll is oddEntries without the parameters GRUB cannot pass.
func oddForAll() []Entry {
	es := oddEntries()
	for i := range es {
		var keep []string
		for _, p := range es[i].Options {
			if grubParam(p) == nil {
				keep = append(keep, p)
			}
		}
		es[i].Options = keep
	}
	return es
}

// TestGRUBQuoting reads GRUB's quoting back with sh, whose single-quote
// and backslash rules GRUB's lexer shares.
func TestGRUBQuoting(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to read the quoting back")
	}
	for _, s := range []string{`it's`, `''`, `a'b'c`, `$HOME`, `back\slash`, `"dq"`, "ünï 桌面", "{ } ; # |", `\'`} {
		out, err := exec.Command(sh, "-c", "printf %s "+grubQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("grubQuote(%q) = %s reads back as %q (%v)", s, grubQuote(s), out, err)
		}
	}
	var b bytes.Buffer
	err = RenderGRUB(&b, []Entry{{ID: "x", Title: "t", Kernel: "/k", Initrd: "/i", Options: []string{"a='b'"}}}, GRUBConfig)
	if err == nil || !strings.Contains(err.Error(), "GRUB passes") {
		t.Errorf("a quote in a GRUB kernel parameter: err = %v", err)
	}
	if err := RenderGRUB(&b, nil, "yaml"); err == nil {
		t.Error("unknown GRUB style accepted")
	}
}

// TestGRUBScriptCheck runs Debian's grub-script-check (package
// grub-common) over the generated GRUB configuration.
func TestGRUBScriptCheck(t *testing.T) {
	gsc, err := exec.LookPath("grub-script-check")
	if err != nil {
		t.Skip("grub-script-check not installed (Debian: apt-get install grub-common)")
	}
	sample, err := Entries(sampleInstalled(), sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, es := range [][]Entry{sample, oddForAll()} {
		for _, style := range []string{GRUBConfig, GRUBScript} {
			var b bytes.Buffer
			if err := RenderGRUB(&b, es, style); err != nil {
				t.Fatal(err)
			}
			text := b.Bytes()
			if style == GRUBScript {
				// What grub-mkconfig pastes is the script's output.
				path := filepath.Join(t.TempDir(), "42_dockroot")
				if err := os.WriteFile(path, text, 0o755); err != nil {
					t.Fatal(err)
				}
				text, err = exec.Command(path).Output()
				if err != nil {
					t.Fatalf("run %s: %v", path, err)
				}
				if !bytes.Contains(text, []byte("menuentry")) || bytes.Contains(text, []byte("exec tail")) {
					t.Fatalf("grub.d script printed %q", text)
				}
			}
			path := filepath.Join(t.TempDir(), "grub.cfg")
			if err := os.WriteFile(path, text, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(gsc, path).CombinedOutput(); err != nil {
				t.Errorf("grub-script-check %s (%s): %v\n%s\n--- input:\n%s", path, style, err, out, text)
			}
		}
	}
	// The checker is not a no-op: an unbalanced quote fails it.
	bad := filepath.Join(t.TempDir(), "bad.cfg")
	if err := os.WriteFile(bad, []byte("menuentry 'x {\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(gsc, bad).Run(); err == nil {
		t.Error("grub-script-check accepted an unbalanced quote; the check above proves nothing")
	}
}

// refindTokens splits one rEFInd configuration line as rEFInd's
// ReadTokenLine does: separators are space, tab, '=' and ',' outside
// double quotes, '#' ends the line outside quotes, and "" inside quotes is
// one '"'.
func refindTokens(line string) []string {
	var toks []string
	var cur strings.Builder
	in, have := false, false
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case in && r == '"' && i+1 < len(rs) && rs[i+1] == '"':
			cur.WriteRune('"')
			i++
		case r == '"':
			in = !in
			have = true
		case !in && (r == ' ' || r == '\t' || r == '=' || r == ','):
			if have {
				toks = append(toks, cur.String())
				cur.Reset()
				have = false
			}
		case !in && r == '#':
			i = len(rs)
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		toks = append(toks, cur.String())
	}
	return toks
}

func TestRefindQuoting(t *testing.T) {
	es := oddEntries()
	var b bytes.Buffer
	if err := RenderRefind(&b, es); err != nil {
		t.Fatal(err)
	}
	var titles, options []string
	for _, line := range strings.Split(b.String(), "\n") {
		toks := refindTokens(line)
		if len(toks) == 0 {
			continue
		}
		switch toks[0] {
		case "menuentry":
			if len(toks) != 3 || toks[2] != "{" {
				t.Errorf("menuentry line %q splits into %q", line, toks)
			}
			titles = append(titles, toks[1])
		case "options":
			if len(toks) != 2 {
				t.Errorf("options line %q splits into %q", line, toks)
			}
			options = append(options, toks[1])
		case "loader", "initrd":
			if len(toks) != 2 || !strings.HasPrefix(toks[1], "/") {
				t.Errorf("%q splits into %q", line, toks)
			}
		}
	}
	if len(titles) != len(es) || len(options) != len(es) {
		t.Fatalf("got titles %q and options %q for %d entries", titles, options, len(es))
	}
	for i, e := range es {
		if titles[i] != e.Title {
			t.Errorf("title reads back as %q, want %q", titles[i], e.Title)
		}
		want, _ := KernelCmdline(e.Options)
		if options[i] != want {
			t.Errorf("options read back as %q, want %q", options[i], want)
		}
	}
}

var blsLineRE = regexp.MustCompile(`^([a-z][a-z-]*) (\S.*)$`)

// TestBLSFieldRules checks the Boot Loader Specification's rules on every
// file: name <id>.conf under loader/entries with a filename-safe id, one
// "key value" per line, each key once, known keys only, linux and initrd
// absolute '/'-paths, and options the kernel reads back unchanged.
func TestBLSFieldRules(t *testing.T) {
	sample, err := Entries(sampleInstalled(), sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	all := append(sample, oddEntries()...)
	files, err := RenderBLS(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(all) {
		t.Fatalf("%d files for %d entries", len(files), len(all))
	}
	known := map[string]bool{"title": true, "version": true, "sort-key": true, "linux": true, "initrd": true, "options": true}
	for _, e := range all {
		name := "loader/entries/" + e.ID + ".conf"
		data, ok := files[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if !idSafe(e.ID) {
			t.Errorf("id %q is not filename-safe", e.ID)
		}
		keys := map[string]string{}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			m := blsLineRE.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("%s: line %q is not \"key value\"", name, line)
				continue
			}
			if !known[m[1]] {
				t.Errorf("%s: unknown key %q", name, m[1])
			}
			if _, dup := keys[m[1]]; dup {
				t.Errorf("%s: key %s twice", name, m[1])
			}
			keys[m[1]] = m[2]
		}
		if keys["title"] != e.Title || keys["version"] != e.Version || keys["sort-key"] != e.SortKey {
			t.Errorf("%s: keys %q do not carry entry %+v verbatim", name, keys, e)
		}
		for _, k := range []string{"linux", "initrd"} {
			if p := keys[k]; !strings.HasPrefix(p, "/") || strings.Contains(p, `\`) || strings.ContainsAny(p, `"' `) {
				t.Errorf("%s: %s %q is not an absolute /-path without quotes", name, k, p)
			}
		}
		cl, err := config.ParseCmdline(keys["options"])
		if err != nil {
			t.Fatalf("%s: options: %v", name, err)
		}
		if len(cl.Params) != len(e.Options) {
			t.Errorf("%s: options %q read back as %d parameters, want %q", name, keys["options"], len(cl.Params), e.Options)
		}
	}
	if _, err := RenderBLS([]Entry{{ID: "a/b", Title: "t", Kernel: "/k", Initrd: "/i"}}); err == nil {
		t.Error("an id with '/' was accepted as a BLS file name")
	}
	if _, err := RenderBLS([]Entry{{ID: "a", Title: "two\nlines", Kernel: "/k", Initrd: "/i"}}); err == nil {
		t.Error("a title with a newline was accepted: it would start a new BLS key")
	}
	if _, err := RenderBLS([]Entry{{ID: "a", Title: "t", Kernel: `\EFI\k`, Initrd: "/i"}}); err == nil {
		t.Error("a backslash path was accepted; BLS wants '/' separators")
	}
}

func TestLoaderPath(t *testing.T) {
	mi := []byte(`22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
23 22 0:30 /@ /srv/btrfs rw shared:2 - btrfs /dev/sdb rw,subvol=/@
24 22 8:1 / /boot/efi rw shared:3 - vfat /dev/sda1 rw
25 22 0:31 /@boot /boot rw shared:4 - btrfs /dev/sdc rw,subvol=/@boot
26 22 8:5 / /mnt/my\040esp rw shared:5 - vfat /dev/sda5 rw
27 25 8:6 / /boot rw shared:6 - vfat /dev/sda6 rw
`)
	for _, tc := range []struct{ dir, want, err string }{
		{"/boot/efi/dockroot", "/dockroot", ""},
		{"/boot/efi", "/", ""},
		{"/srv/btrfs/boot/dockroot", "/@/boot/dockroot", ""},
		{"/var/dockroot", "/var/dockroot", ""},
		{"/mnt/my esp/dockroot", "/dockroot", ""},
		{"/boot/dockroot", "/dockroot", ""}, // the vfat mounted over /boot wins
		{"/boots", "/boots", ""},
		{"relative", "", "absolute"},
	} {
		got, err := LoaderPath(mi, tc.dir)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("LoaderPath(%q) err = %v, want %q", tc.dir, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("LoaderPath(%q) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
	if _, err := LoaderPath([]byte("22 1 0:21 / /boot rw - ext4 x rw\n"), "/srv"); err == nil {
		t.Error("a directory on no mount got a loader path")
	}
}

// An image from Podman's or containerd's store boots with dockroot.store=
// (and the store's path when the menu was given one), the previous-layer
// entry with its default image's; Docker's classic store, the init's first
// choice, adds nothing, so menus made before stores had kinds stay as they
// were.
func TestEntriesStoreOptions(t *testing.T) {
	installed := []Installed{
		{Ref: "classic:1", ImageID: "sha256:aa", KernelVersion: "6.1", Kernel: KernelFile, Initrd: InitrdFile, Store: "graphdriver"},
		{Ref: "ctrd:1", ImageID: "sha256:bb", KernelVersion: "6.1", Kernel: KernelFile, Initrd: InitrdFile, Store: "containerd"},
		{Ref: "old:1", ImageID: "sha256:cc", KernelVersion: "6.1", Kernel: KernelFile, Initrd: InitrdFile},
		{Ref: "pod:1", ImageID: "sha256:dd", KernelVersion: "6.1", Kernel: KernelFile, Initrd: InitrdFile, Store: "podman"},
	}
	for _, tc := range []struct {
		name   string
		params func(*Params)
		want   map[string][]string // Ref ("" for the previous layer) → store options
	}{
		{"default paths", func(p *Params) { p.Default = "pod:1" }, map[string][]string{
			"classic:1": nil, "old:1": nil,
			"ctrd:1": {"dockroot.store=containerd"},
			"pod:1":  {"dockroot.store=podman"},
			"":       {"dockroot.store=podman"},
		}},
		{"paths given", func(p *Params) { p.PodmanPath, p.ContainerdPath = "@/podman", "@/ctrd" }, map[string][]string{
			"classic:1": nil, "old:1": nil, "": nil,
			"ctrd:1": {"dockroot.store=containerd", "containerd_path=@/ctrd"},
			"pod:1":  {"dockroot.store=podman", "podman_path=@/podman"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sampleParams()
			tc.params(&p)
			es, err := Entries(installed, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				var got []string
				for _, o := range e.Options {
					if strings.HasPrefix(o, "dockroot.store=") || strings.HasPrefix(o, "podman_path=") || strings.HasPrefix(o, "containerd_path=") {
						got = append(got, o)
					}
				}
				if want := tc.want[e.Ref]; strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("entry %q: store options %q, want %q (all: %q)", e.Ref, got, want, e.Options)
				}
				titles := map[string]string{"classic:1": "dockroot classic:1", "old:1": "dockroot old:1",
					"ctrd:1": "dockroot ctrd:1 (containerd)", "pod:1": "dockroot pod:1 (podman)"}
				if want, ok := titles[e.Ref]; ok && e.Title != want {
					t.Errorf("entry %q: title %q, want %q", e.Ref, e.Title, want)
				}
			}
		})
	}
}
