package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dockroot/dockroot/internal/layout"
)

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name     string
		dockroot string
		ancestor string
		want     []string
	}{
		{"syntax error with position", "{\n  \"keep\": 1\n  \"onfail\": \"halt\"\n}", "",
			[]string{"/etc/dockroot.json:3:3", "invalid character", "dockroot initramfs --config"}},
		{"trailing comma", `{"keep": 1,}`, "", []string{"/etc/dockroot.json:1:12"}},
		{"truncated", `{"keep": 1`, "", []string{"/etc/dockroot.json:1:11", "unexpected end"}},
		{"empty file", "", "", []string{"/etc/dockroot.json: the file is empty", "write {}"}}, // an empty file is not a missing one
		{"not an object", `["keep", 1]`, "", []string{"/etc/dockroot.json:1:2", "want a JSON object"}},
		{"data after the object", `{"keep": 1} {"keep": 2}`, "", []string{"after the closing }"}},
		{"string for a number", `{"tries": "3"}`, "", []string{"/etc/dockroot.json:1:11", `field "tries" must be a whole number, got "3"`}},
		{"number for a string", "{\n\"root\": 5}", "", []string{"/etc/dockroot.json:2:9", `field "root" must be a string, got 5`}},
		{"number for a bool", `{"debug": 1}`, "", []string{`field "debug" must be true or false`}},
		{"init_args not a list", `{"init_args": "single"}`, "", []string{`field "init_args" must be a list of strings`}},
		{"ancestor file malformed", "", `{"docker_image": "x",`, []string{"/etc/docker-btrfs.json:1:22"}},
		{"ancestor tag not a string", "", `{"docker_image": "x", "docker_tag": 3}`, []string{"/etc/docker-btrfs.json:1:37", `field "docker_tag" must be a string`}},
		{"ancestor tag and tagged image", "", `{"docker_image": "x:1", "docker_tag": "2"}`, []string{"already has a tag or digest", "keep one of them"}},
		{"ancestor tag and digest", "", `{"docker_image": "x@sha256:abc", "docker_tag": "2"}`, []string{"already has a tag or digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			if tt.dockroot != "" || tt.name == "empty file" {
				fsys["etc/dockroot.json"] = &fstest.MapFile{Data: []byte(tt.dockroot)}
			}
			if tt.ancestor != "" {
				fsys["etc/docker-btrfs.json"] = &fstest.MapFile{Data: []byte(tt.ancestor)}
			}
			c, err := Load(base, fsys)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Load = %v, want a *FileError", err)
			}
			if c == nil || c.Image != "img" {
				t.Errorf("Load with a bad file must still return the command line's config, got %+v", c)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestConfigFileUnreadable(t *testing.T) {
	fsys := fstest.MapFS{"etc/dockroot.json/x": {Data: []byte("{}")}} // a directory
	_, err := Load(base, fsys)
	var fe *FileError
	if !errors.As(err, &fe) || fe.File != "/etc/dockroot.json" {
		t.Errorf("Load with a directory for the file = %v, want a *FileError naming it", err)
	}
}

func TestConfigFileFields(t *testing.T) {
	all := `{
	"root": "UUID=ABCD-1234", "rootfstype": "btrfs", "rootflags": "subvol=layer,compress=zstd", "rw": true,
	"init": "/lib/systemd/systemd", "init_args": ["--log-level=debug"],
	"docker_path": "docker", "podman_path": "podman", "containerd_path": "ctrd", "docker_image": "debian:bookworm",
	"toplayer": "LABEL=cfg", "toplayerfstype": "vfat", "toplayerflags": "ro,utf8", "toplayer_path": "machine", "toplayer_required": true,
	"rootwait": 12, "rootdelay": 2, "resume": "LABEL=swap", "resume_offset": 34816, "noresume": false,
	"keep": 0, "cache": false, "adopt": false, "onfail": "previous", "timeout": 60, "store": "graphdriver", "debug": true, "tries": 5
}`
	c, err := Load("", files(all, ""))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Config{Root: "UUID=ABCD-1234", RootDevice: DeviceSpec{Kind: DeviceUUID, Value: "abcd-1234"}, RootFSType: "btrfs",
		Subvol: "layer", subvolGiven: true, rootFlagsRaw: "subvol=layer,compress=zstd", RootFlags: []string{"compress=zstd"}, ReadOnly: false,
		Init: "/lib/systemd/systemd", InitArgs: []string{"--log-level=debug"}, DockerPath: "docker", PodmanPath: "podman", ContainerdPath: "ctrd", Image: "debian:bookworm",
		Toplayer: "LABEL=cfg", ToplayerDevice: DeviceSpec{Kind: DeviceLabel, Value: "cfg"}, ToplayerFSType: "vfat",
		ToplayerFlags: []string{"ro", "utf8"}, ToplayerPath: "machine", ToplayerPaths: []string{"machine"}, ToplayerRequired: true,
		RootWait: true, RootWaitTimeout: 12e9, RootDelay: 2e9, Resume: "LABEL=swap", ResumeOffset: 34816,
		Keep: 0, OnFail: OnFailPrevious, Timeout: 60e9, Store: layout.StoreGraphDriver, Debug: true, Tries: 5, Layer: LayerNew}
	for k, src := range c.Sources {
		if src != "/etc/dockroot.json" && k != "docker_image" && (k != "dockroot.layer" || src != SourceDefault) {
			t.Errorf("Sources[%q] = %q, want the file", k, src)
		}
	}
	c.Sources, c.Warnings = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(all fields) =\n  %+v\nwant\n  %+v", c, want)
	}
	// Every option's JSON field is in the test file above.
	for _, o := range options {
		if o.json != "" && !strings.Contains(all, `"`+o.json+`"`) {
			t.Errorf("the all-fields test lacks %q", o.json)
		}
	}
}

func TestConfigFileWarningsAndNull(t *testing.T) {
	c, err := Load(base, files(`{"kep": 3, "keep": 2, "keep": 4, "debug": null, "extra": {"a": [1]}}`, `{"docker_image": "x", "note": "hi"}`))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Keep != 4 || c.Debug {
		t.Errorf("Keep %d Debug %v, want 4 (last duplicate wins) and false (null = unset)", c.Keep, c.Debug)
	}
	for _, w := range []string{`unknown field "kep" ignored (did you mean "keep"?)`, `"keep" appears more than once`,
		`unknown field "extra"`, `/etc/docker-btrfs.json: unknown field "note"`} {
		if !hasWarning(c, w) {
			t.Errorf("warnings %q lack %q", c.Warnings, w)
		}
	}
}

func TestHasTagOrDigest(t *testing.T) {
	tests := []struct {
		ref  string
		want bool
	}{
		{"ubuntu", false}, {"ubuntu:22.04", true}, {"host:5000/app", false}, {"host:5000/app:1", true},
		{"app@sha256:abc", true}, {"team/app", false},
	}
	for _, tt := range tests {
		if got := hasTagOrDigest(tt.ref); got != tt.want {
			t.Errorf("hasTagOrDigest(%q) = %v, want %v", tt.ref, got, tt.want)
		}
	}
}
