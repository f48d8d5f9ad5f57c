package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

var cmdlineSeeds = []string{
	"",
	ancestorLine,
	"BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=0a1b-2c3d ro quiet splash\n",
	`key="a b" "key2=c d" x=""`,
	`a=b"c d"e`,
	`a="unclosed`,
	`"`,
	`""`,
	"=x=y ==",
	"rootflags=subvol=x,compress=zstd -- single a=b -- dropped",
	"dockroot.keep=abc dockroot.onfail=previous dockroot.debug dockroot.kep=1",
	"a\x00b",
	"\t\n\v\f\r",
	"docker_image=registry.example:5000/team/desk:1 toplayer=/dev/disk/by-label/x\\x20y",
}

// leaves returns the messages of the single errors inside err.
func leaves(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// checkOneLine fails when a message would break into several /dev/kmsg
// records (and so several console lines out of order).
func checkOneLine(t *testing.T, what string, msgs []string) {
	t.Helper()
	for _, m := range msgs {
		if strings.ContainsAny(m, "\n\r") {
			t.Errorf("%s %q spans lines", what, m)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range cmdlineSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if c == nil {
			t.Fatalf("ParseCmdline(%q) returned no Cmdline", s)
		}
		if err != nil {
			var qe *QuoteError
			if !errors.As(err, &qe) || qe.Offset < 0 || qe.Offset >= len(s) || s[qe.Offset] != '"' {
				t.Fatalf("ParseCmdline(%q) error %v: want a *QuoteError pointing at a quote", s, err)
			}
		}
		last := map[string]Param{}
		quoteFree := true
		for _, p := range c.Params {
			if !p.HasValue && p.Key == "--" {
				t.Fatalf("ParseCmdline(%q): %q kept as a parameter", s, "--")
			}
			last[p.Key] = p
			quoteFree = quoteFree && !strings.Contains(p.Key+p.Value, `"`)
		}
		for k, want := range last {
			if got, ok := c.Lookup(k); !ok || got != want {
				t.Fatalf("ParseCmdline(%q).Lookup(%q) = %#v, want the last one %#v", s, k, got, want)
			}
		}
		for _, a := range c.InitArgs {
			quoteFree = quoteFree && !strings.Contains(a, `"`)
		}
		// Round trip: what String writes, ParseCmdline reads back.
		if err == nil && quoteFree {
			again, err := ParseCmdline(c.String())
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("round trip of %q through %q: got %#v, %v; want %#v", s, c.String(), again, err, c)
			}
		}
		// Load takes any line: it returns a Config and one-line messages.
		cfg, err := Load(s, nil)
		if cfg == nil {
			t.Fatalf("Load(%q) returned no Config", s)
		}
		checkOneLine(t, "error", leaves(err))
		checkOneLine(t, "warning", cfg.Warnings)
	})
}

func FuzzLoadConfigFile(f *testing.F) {
	for _, s := range []struct{ dockroot, ancestor string }{
		{`{}`, `{}`},
		{`{"keep": 2, "onfail": "previous", "rootflags": "subvol=x", "init_args": ["a"]}`, `{"docker_image": "x", "docker_tag": "1"}`},
		{`{"keep": 1.5, "debug": 1, "root": null}`, `{"docker_image": "x:1", "docker_tag": "2"}`},
		{`{"kep": 2, "keep": 3, "keep": 4}`, `[]`},
		{"{\n\"keep\": 1\n\"x\": 2}", `{"docker_image": 5}`},
		{`{"rootwait": true, "rootdelay": -1, "timeout": 1e3}`, ``},
		{`{"docker_path": "/abs", "toplayer_path": "../x"}`, `{"docker_image": "a", "junk": {}}`},
		{"\xff\xfe", "null"},
	} {
		f.Add([]byte(s.dockroot), []byte(s.ancestor))
	}
	f.Fuzz(func(t *testing.T, dockroot, ancestor []byte) {
		fsys := fstest.MapFS{
			"etc/dockroot.json":     {Data: dockroot},
			"etc/docker-btrfs.json": {Data: ancestor},
		}
		const cmdline = "root=LABEL=linux rootflags=subvol=rw,ssd docker_image=fromcmdline dockroot.onfail=halt"
		c, err := Load(cmdline, fsys)
		if c == nil {
			t.Fatal("Load returned no Config")
		}
		checkOneLine(t, "error", leaves(err))
		checkOneLine(t, "warning", c.Warnings)
		// Whatever the files say, the command line wins for what it sets.
		if c.Root != "LABEL=linux" || c.Subvol != "rw" || c.Image != "fromcmdline" || c.OnFail != OnFailHalt {
			t.Fatalf("the files overrode the command line: %+v", c)
		}
		for _, k := range []string{"root", "rootflags", "docker_image", "dockroot.onfail"} {
			if c.Sources[k] != SourceCmdline {
				t.Fatalf("Sources[%q] = %q, want cmdline", k, c.Sources[k])
			}
		}
		// A file error names the file.
		var fe *FileError
		if errors.As(err, &fe) && !strings.HasPrefix(fe.Error(), "/etc/") {
			t.Fatalf("file error %q does not start with the file name", fe)
		}
		_, _ = CheckFile("x.json", dockroot)
	})
}
