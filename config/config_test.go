package config

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
)

const ancestorLine = "root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker"

func files(dockroot, dockerBtrfs string) fstest.MapFS {
	m := fstest.MapFS{}
	if dockroot != "" {
		m["etc/dockroot.json"] = &fstest.MapFile{Data: []byte(dockroot)}
	}
	if dockerBtrfs != "" {
		m["etc/docker-btrfs.json"] = &fstest.MapFile{Data: []byte(dockerBtrfs)}
	}
	return m
}

func TestLoadAncestorLine(t *testing.T) {
	c, err := Load(ancestorLine+" docker_image=archlinux/base", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{
		Root: "LABEL=linux", RootDevice: DeviceSpec{Kind: DeviceLabel, Value: "linux"}, RootFSType: "btrfs",
		Subvol: "docker_rwlayer", subvolGiven: true, rootFlagsRaw: "subvol=docker_rwlayer",
		ReadOnly: false, Init: "/sbin/init", DockerPath: "docker", PodmanPath: "var/lib/containers/storage", ContainerdPath: "var/lib/containerd",
		Toplayer: "LABEL=linux", ToplayerDevice: DeviceSpec{Kind: DeviceLabel, Value: "linux"},
		ToplayerFSType: "btrfs", ToplayerPath: "boot_docker", ToplayerPaths: []string{"boot_docker"},
		Image: "archlinux/base", Keep: 1, Cache: true, Adopt: true, OnFail: OnFailShell, Timeout: 30 * time.Second, Store: layout.StoreAuto, Tries: 3,
		Layer: LayerNew,
	}
	c.Sources, c.Warnings = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(ancestor line) =\n  %+v\nwant\n  %+v", c, want)
	}
}

func TestLoadAncestorLineWithAncestorFile(t *testing.T) {
	c, err := Load(ancestorLine, files("", `{"docker_image": "zasdfgbnmsystem/basic", "docker_tag": "latest"}`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Image != "zasdfgbnmsystem/basic:latest" || c.Sources["docker_image"] != "/etc/docker-btrfs.json" {
		t.Errorf("Image = %q from %q, want zasdfgbnmsystem/basic:latest from /etc/docker-btrfs.json", c.Image, c.Sources["docker_image"])
	}
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	want := &Config{RootFSType: "btrfs", ReadOnly: true, Init: "/sbin/init", DockerPath: "var/lib/docker", PodmanPath: "var/lib/containers/storage", ContainerdPath: "var/lib/containerd",
		Keep: 1, Cache: true, Adopt: true, OnFail: OnFailShell, Timeout: 30 * time.Second, Store: layout.StoreAuto, Tries: 3, Layer: LayerNew}
	got := *c
	got.Sources = nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("Defaults() =\n  %+v\nwant\n  %+v", &got, want)
	}
	for _, o := range options {
		if o.def != nil && c.Sources[o.key] != SourceDefault {
			t.Errorf("Sources[%q] = %q, want default", o.key, c.Sources[o.key])
		}
	}
}

// base is a valid command line; tests append to it (the last key wins).
const base = "root=LABEL=linux rootflags=subvol=rw docker_image=img "

func TestLoadKeys(t *testing.T) {
	tests := []struct {
		cmdline string
		check   func(c *Config) bool
		want    string
	}{
		{"rootfstype=btrfs", func(c *Config) bool { return c.RootFSType == "btrfs" }, "RootFSType btrfs"},
		{"rootflags=subvol=/x/y/,compress=zstd,noatime", func(c *Config) bool {
			return c.Subvol == "x/y" && reflect.DeepEqual(c.RootFlags, []string{"compress=zstd", "noatime"})
		}, "Subvol x/y, RootFlags [compress=zstd noatime]"},
		{"rootflags=subvolid=256,subvol=a,ssd", func(c *Config) bool {
			return c.Subvol == "a" && reflect.DeepEqual(c.RootFlags, []string{"ssd"}) && hasWarning(c, "subvolid=256 ignored")
		}, "subvolid stripped with a warning"},
		{"rootflags=subvol=a,subvol=b", func(c *Config) bool { return c.Subvol == "b" && hasWarning(c, "last one") }, "last subvol wins"},
		{"", func(c *Config) bool { return c.ReadOnly }, "ro by default, as the kernel"},
		{"rw", func(c *Config) bool { return !c.ReadOnly }, "rw"},
		{"rw ro", func(c *Config) bool { return c.ReadOnly }, "last of rw/ro wins (ro)"},
		{"ro rw", func(c *Config) bool { return !c.ReadOnly }, "last of ro/rw wins (rw)"},
		{"rw ro=1", func(c *Config) bool { return !c.ReadOnly && hasWarning(c, "ro=1 ignored") }, "ro=1 is not ro"},
		{"init=/bin/sh", func(c *Config) bool { return c.Init == "/bin/sh" }, "init"},
		{"-- single x=y", func(c *Config) bool {
			return reflect.DeepEqual(c.InitArgs, []string{"single", "x=y"}) && c.Sources["init_args"] == SourceCmdline
		}, "init args"},
		{"docker_path=./a//b/", func(c *Config) bool { return c.DockerPath == "a/b" }, "docker_path cleaned"},
		{"docker_path=.", func(c *Config) bool { return c.DockerPath == "." }, "docker_path at the top level"},
		{"toplayer=/dev/vdb toplayer_path=/machine/ toplayerfstype=ext4 toplayerflags=noatime,,errors=remount-ro", func(c *Config) bool {
			return c.ToplayerDevice == DeviceSpec{Kind: DevicePath, Value: "/dev/vdb"} && c.ToplayerPath == "machine" &&
				c.ToplayerFSType == "ext4" && reflect.DeepEqual(c.ToplayerFlags, []string{"noatime", "errors=remount-ro"})
		}, "top layer on a second disk"},
		{"", func(c *Config) bool {
			return c.Toplayer == "LABEL=linux" && c.ToplayerFSType == "btrfs" && c.ToplayerPath == "" && c.ToplayerOnRoot()
		}, "top layer defaults to the root device"},
		{"toplayer=/dev/vdb", func(c *Config) bool { return c.ToplayerFSType == "" && hasWarning(c, "toplayer_path= is empty") }, "other device: fs type detected, warns without a path"},
		{"toplayer=/dev/disk/by-label/linux", func(c *Config) bool { return c.ToplayerOnRoot() && c.ToplayerFSType == "" }, "same device spelled differently"},
		{"rootwait", func(c *Config) bool { d, f := c.DeviceWait(); return c.RootWait && f && d == 0 }, "rootwait waits forever"},
		{"rootwait=7", func(c *Config) bool { d, f := c.DeviceWait(); return c.RootWait && !f && d == 7*time.Second }, "rootwait=N"},
		{"rootwait=0", func(c *Config) bool { d, f := c.DeviceWait(); return !c.RootWait && !f && d == 30*time.Second }, "rootwait=0 does not wait (kernel)"},
		{"dockroot.timeout=5", func(c *Config) bool { d, f := c.DeviceWait(); return !f && d == 5*time.Second }, "timeout"},
		{"rootdelay=4", func(c *Config) bool { return c.RootDelay == 4*time.Second }, "rootdelay"},
		{"resume=/dev/vdc noresume", func(c *Config) bool { return c.Resume == "/dev/vdc" && c.NoResume }, "resume"},
		{"dockroot.keep=0 dockroot.tries=5", func(c *Config) bool { return c.Keep == 0 && c.Tries == 5 }, "keep, tries"},
		{"dockroot.keep=2 dockroot.keep=4", func(c *Config) bool { return c.Keep == 4 }, "last keep wins"},
		{"dockroot.kep=2", func(c *Config) bool { return c.Keep == 1 && hasWarning(c, "did you mean dockroot.keep?") }, "unknown dockroot key warns"},
		{"dockroot.frobnicate", func(c *Config) bool { return hasWarning(c, "unknown parameter dockroot.frobnicate") }, "unknown bare dockroot key warns"},
		{"quiet splash foo.bar=1 dockroot_keep=3", func(c *Config) bool { return len(c.Warnings) == 0 && c.Keep == 1 }, "other keys ignored silently"},
	}
	for _, tt := range tests {
		c, err := Load(base+tt.cmdline, nil)
		if err != nil {
			t.Errorf("Load(%q): %v", tt.cmdline, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("Load(%q): want %s; got %+v", tt.cmdline, tt.want, c)
		}
	}
}

func hasWarning(c *Config, s string) bool {
	for _, w := range c.Warnings {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

// Every option table gets a table test: the accepted values of
// dockroot.onfail=, dockroot.store= and the yes/no flags.
func TestOnFailValues(t *testing.T) {
	tests := []struct {
		in   string
		want OnFail
		ok   bool
	}{
		{"shell", OnFailShell, true},
		{"reboot", OnFailReboot, true},
		{"halt", OnFailHalt, true},
		{"previous", OnFailPrevious, true},
		{"Shell", "", false},
		{"poweroff", "", false},
		{"", "", false},
	}
	if len(OnFails) != 4 {
		t.Errorf("OnFails has %d entries, the table tests 4", len(OnFails))
	}
	for _, tt := range tests {
		c, err := Load(base+"dockroot.onfail="+tt.in, nil)
		if tt.ok {
			if err != nil || c.OnFail != tt.want {
				t.Errorf("dockroot.onfail=%s: got %q, %v; want %q", tt.in, c.OnFail, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "shell, reboot, halt, previous") {
			t.Errorf("dockroot.onfail=%s: error %v, want one listing the choices", tt.in, err)
		}
	}
}

// dockroot.layer=: the boot menu's previous-layer entry passes
// dockroot.layer=previous, and an existing layer needs no docker_image=.
func TestLayerValues(t *testing.T) {
	const noImage = "root=LABEL=linux rootflags=subvol=rw "
	tests := []struct {
		cmdline string
		want    LayerMode
		ok      bool
	}{
		{base, LayerNew, true},
		{base + "dockroot.layer=new", LayerNew, true},
		{base + "dockroot.layer=previous", LayerPrevious, true},
		{base + "dockroot.layer=current", LayerCurrent, true},
		{noImage + "dockroot.layer=previous", LayerPrevious, true},
		{noImage + "dockroot.layer=current", LayerCurrent, true},
		{noImage + "dockroot.layer=new", "", false}, // a new layer needs an image
		{base + "dockroot.layer=prev.1", "", false},
		{base + "dockroot.layer=Previous", "", false},
		{base + "dockroot.layer", "", false},
	}
	if len(LayerModes) != 3 {
		t.Errorf("LayerModes has %d entries, the table tests 3", len(LayerModes))
	}
	for _, tt := range tests {
		c, err := Load(tt.cmdline, nil)
		if tt.ok {
			if err != nil || c.Layer != tt.want {
				t.Errorf("Load(%q): layer %q, %v; want %q", tt.cmdline, c.Layer, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("Load(%q): no error, layer %q", tt.cmdline, c.Layer)
			continue
		}
		if strings.Contains(tt.cmdline, "dockroot.layer=p") || strings.HasSuffix(tt.cmdline, "dockroot.layer") {
			if !strings.Contains(err.Error(), "dockroot.layer") || !strings.Contains(err.Error(), "new, previous, current") && !strings.Contains(err.Error(), "needs a value") {
				t.Errorf("Load(%q): error %v, want one naming dockroot.layer and its choices", tt.cmdline, err)
			}
		}
	}
}

func TestStoreValues(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"auto", true}, {"graphdriver", true}, {"overlay2", false}, {"containerd", true}, {"podman", true}, {"lvm", false}, {"", false},
	}
	for _, tt := range tests {
		c, err := Load(base+"dockroot.store="+tt.in, nil)
		if tt.ok != (err == nil) || tt.ok && c.Store != tt.in {
			t.Errorf("dockroot.store=%s: got %q, %v; want ok=%v", tt.in, c.Store, err, tt.ok)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "auto, graphdriver")) {
			t.Errorf("dockroot.store=%s: error %v, want one listing the choices", tt.in, err)
		}
	}
}

func TestFlagValues(t *testing.T) {
	tests := []struct {
		param string
		want  bool
		ok    bool
	}{
		{"dockroot.debug", true, true},
		{"dockroot.debug=1", true, true},
		{"dockroot.debug=true", true, true},
		{"dockroot.debug=yes", true, true},
		{"dockroot.debug=on", true, true},
		{"dockroot.debug=0", false, true},
		{"dockroot.debug=false", false, true},
		{"dockroot.debug=no", false, true},
		{"dockroot.debug=off", false, true},
		{"dockroot.debug=maybe", false, false},
		{"dockroot.debug=", false, false},
	}
	for _, tt := range tests {
		c, err := Load(base+tt.param, nil)
		if tt.ok != (err == nil) || c.Debug != tt.want {
			t.Errorf("%s: Debug = %v, err %v; want %v, ok=%v", tt.param, c.Debug, err, tt.want, tt.ok)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dockrootJSON := `{"root": "LABEL=fromfile", "rootflags": "subvol=filelayer,compress=zstd", "docker_image": "fromdockroot:1",
		"keep": 2, "onfail": "reboot", "timeout": 9, "debug": true, "rw": true, "init_args": ["--from-file"]}`
	dockerBtrfsJSON := `{"docker_image": "fromancestor", "docker_tag": "2"}`
	tests := []struct {
		name       string
		cmdline    string
		dockroot   string
		ancestor   string
		wantImage  string
		wantSource string
	}{
		{"cmdline over both files", "docker_image=fromcmdline", dockrootJSON, dockerBtrfsJSON, "fromcmdline", SourceCmdline},
		{"dockroot.json over docker-btrfs.json", "", dockrootJSON, dockerBtrfsJSON, "fromdockroot:1", "/etc/dockroot.json"},
		{"docker-btrfs.json alone", "", `{"keep": 2}`, dockerBtrfsJSON, "fromancestor:2", "/etc/docker-btrfs.json"},
		{"docker-btrfs.json without a tag", "", "", `{"docker_image": "host:5000/team/app"}`, "host:5000/team/app", "/etc/docker-btrfs.json"},
		{"docker-btrfs.json registry port and tag", "", "", `{"docker_image": "host:5000/app", "docker_tag": "v1"}`, "host:5000/app:v1", "/etc/docker-btrfs.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("root=LABEL=linux rootflags=subvol=rw "+tt.cmdline, files(tt.dockroot, tt.ancestor))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.Image != tt.wantImage || c.Sources["docker_image"] != tt.wantSource {
				t.Errorf("Image = %q from %q, want %q from %q", c.Image, c.Sources["docker_image"], tt.wantImage, tt.wantSource)
			}
		})
	}

	// Per key: the command line wins where it speaks, the file elsewhere,
	// the defaults last.
	c, err := Load("root=LABEL=linux dockroot.keep=5 ro -- --from-cmdline", files(dockrootJSON, dockerBtrfsJSON))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, tt := range []struct {
		key    string
		got    any
		want   any
		source string
	}{
		{"root", c.Root, "LABEL=linux", SourceCmdline},
		{"dockroot.keep", c.Keep, 5, SourceCmdline},
		{"rw", c.ReadOnly, true, SourceCmdline},
		{"init_args", c.InitArgs, []string{"--from-cmdline"}, SourceCmdline},
		{"rootflags", c.RootFlags, []string{"compress=zstd"}, "/etc/dockroot.json"},
		{"subvol", c.Subvol, "filelayer", "/etc/dockroot.json"},
		{"dockroot.onfail", c.OnFail, OnFailReboot, "/etc/dockroot.json"},
		{"dockroot.timeout", c.Timeout, 9 * time.Second, "/etc/dockroot.json"},
		{"dockroot.debug", c.Debug, true, "/etc/dockroot.json"},
		{"dockroot.tries", c.Tries, 3, SourceDefault},
		{"docker_path", c.DockerPath, "var/lib/docker", SourceDefault},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) || c.Sources[tt.key] != tt.source {
			t.Errorf("%s = %v from %q, want %v from %q", tt.key, tt.got, c.Sources[tt.key], tt.want, tt.source)
		}
	}
	// init_args from the file apply when the command line has no "--".
	c, _ = Load("root=LABEL=linux", files(dockrootJSON, ""))
	if !reflect.DeepEqual(c.InitArgs, []string{"--from-file"}) || c.Sources["init_args"] != "/etc/dockroot.json" {
		t.Errorf("InitArgs = %q from %q, want [--from-file] from the file", c.InitArgs, c.Sources["init_args"])
	}
}

func TestLoadCustomFiles(t *testing.T) {
	fsys := fstest.MapFS{"conf/d.json": {Data: []byte(`{"docker_image": "x"}`)}}
	c, err := LoadFiles("root=/dev/vda rootflags=subvol=l", fsys, Files{DockrootJSON: "/conf/d.json"})
	if err != nil || c.Image != "x" || c.Sources["docker_image"] != "/conf/d.json" {
		t.Errorf("LoadFiles: Image %q from %q, err %v", c.Image, c.Sources["docker_image"], err)
	}
}

// TestOptionsTable checks the documentation table against the option
// table it is made from.
func TestOptionsTable(t *testing.T) {
	seenKey, seenJSON := map[string]bool{}, map[string]bool{}
	for _, o := range options {
		if seenKey[o.key] || (o.json != "" && seenJSON[o.json]) {
			t.Errorf("option %s / %s listed twice", o.key, o.json)
		}
		seenKey[o.key], seenJSON[o.json] = true, true
		if o.doc == "" || o.defDoc == "" || o.want == "" || o.set == nil || o.types == 0 {
			t.Errorf("option %s is missing its doc, default, want, setter or JSON type", o.key)
		}
		if o.def != nil {
			c := Defaults()
			if err := o.set(c, *o.def); err != nil {
				t.Errorf("default of %s does not parse: %v", o.key, err)
			}
		}
		if o.example != "" {
			c := Defaults()
			if err := o.set(c, setting{value: o.example}); err != nil {
				t.Errorf("the example in %s's fix, %q, does not parse: %v", o.key, o.example, err)
			}
		}
	}
	docs := Options()
	if len(docs) != len(options)+1 {
		t.Errorf("Options() has %d rows, want %d", len(docs), len(options)+1)
	}
	for _, key := range []string{"root=", "ro / rw", "docker_image=", "dockroot.keep=", "dockroot.onfail=", "dockroot.tries=", "dockroot.layer=", "-- ARGS"} {
		found := false
		for _, d := range docs {
			found = found || d.Key == key
		}
		if !found {
			t.Errorf("Options() lacks %q", key)
		}
	}
}
