package config

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// TestValidationMessages checks every message: which key it names and the
// words that tell the user what is wrong and what to do.
func TestValidationMessages(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		fsys    fstest.MapFS
		key     string
		want    []string
	}{
		{"no subvol", "root=LABEL=linux docker_image=x", nil, "rootflags",
			[]string{"no subvol=", `add "rootflags=subvol=docker_rwlayer" to the kernel command line`}},
		{"no subvol, other rootflags kept in the fix", "root=LABEL=linux docker_image=x rootflags=compress=zstd,noatime", nil, "rootflags",
			[]string{`rootflags="compress=zstd,noatime" (kernel command line)`, "no subvol=",
				`replace rootflags=compress=zstd,noatime with "rootflags=subvol=docker_rwlayer,compress=zstd,noatime" on the kernel command line`}},
		{"only subvolid", "root=LABEL=linux docker_image=x rootflags=subvolid=257", nil, "rootflags",
			[]string{"no subvol=", `"rootflags=subvol=docker_rwlayer"`}},
		{"subvol=/", "root=LABEL=linux docker_image=x rootflags=subvol=/", nil, "rootflags",
			[]string{"subvol=/ names the top level", `e.g. "rootflags=subvol=docker_rwlayer"`}},
		{"subvol empty", "root=LABEL=linux docker_image=x rootflags=subvol=,ssd", nil, "rootflags",
			[]string{"subvol= names the top level", `"rootflags=subvol=docker_rwlayer,ssd"`}},
		{"subvol=.", "root=LABEL=linux docker_image=x rootflags=subvol=.", nil, "rootflags", []string{"subvol=. names the top level"}},
		{"subvol=./", "root=LABEL=linux docker_image=x rootflags=subvol=./", nil, "rootflags", []string{"names the top level"}},
		{"subvol with ..", "root=LABEL=linux docker_image=x rootflags=subvol=a/../b", nil, "rootflags",
			[]string{"subvol=a/../b", `contains ".."`}},
		{"subvol inside docker_path", "root=LABEL=linux docker_image=x rootflags=subvol=var/lib/docker/btrfs/subvolumes/abc", nil, "rootflags",
			[]string{"inside the Docker data root docker_path=var/lib/docker", "Docker's own tree", "rootflags=subvol=docker_rwlayer"}},
		{"subvol equal to docker_path", "root=LABEL=linux docker_image=x docker_path=docker rootflags=subvol=/docker/", nil, "rootflags",
			[]string{"inside the Docker data root docker_path=docker"}},
		{"subvol containing docker_path", "root=LABEL=linux docker_image=x rootflags=subvol=var", nil, "rootflags",
			[]string{"contains the Docker data root docker_path=var/lib/docker", "throw away Docker's images"}},
		{"subvol inside podman_path", "root=LABEL=linux docker_image=x rootflags=subvol=var/lib/containers/storage/btrfs", nil, "rootflags",
			[]string{"inside the image store podman_path=var/lib/containers/storage", "rootflags=subvol=docker_rwlayer"}},
		{"subvol containing podman_path", "root=LABEL=linux docker_image=x podman_path=srv/pod rootflags=subvol=srv", nil, "rootflags",
			[]string{"contains the image store podman_path=srv/pod", "throw away its images"}},
		{"subvol equal to containerd_path", "root=LABEL=linux docker_image=x rootflags=subvol=var/lib/containerd", nil, "rootflags",
			[]string{"inside the image store containerd_path=var/lib/containerd"}},
		{"subvol is a Docker entry when docker_path=.", "root=LABEL=linux docker_image=x docker_path=. rootflags=subvol=btrfs/subvolumes/x", nil, "rootflags",
			[]string{"inside the Docker data root (docker_path=.", "btrfs is Docker's own"}},
		{"docker_path absolute", "root=LABEL=linux docker_image=x rootflags=subvol=rw docker_path=/var/lib/docker", nil, "docker_path",
			[]string{`docker_path="/var/lib/docker"`, "absolute", "docker_path=var/lib/docker", "docker_path=."}},
		{"docker_path empty", "root=LABEL=linux docker_image=x rootflags=subvol=rw docker_path=", nil, "docker_path",
			[]string{"is empty", "docker_path=var/lib/docker"}},
		{"docker_path with ..", "root=LABEL=linux docker_image=x rootflags=subvol=rw docker_path=../docker", nil, "docker_path",
			[]string{`contains ".."`, "use docker_path=var/lib/docker"}},
		{"no image anywhere", "root=LABEL=linux rootflags=subvol=rw", nil, "docker_image",
			[]string{"not set", "docker_image=REF on the kernel command line", "/etc/dockroot.json", "/etc/docker-btrfs.json"}},
		{"image empty on the cmdline hides the files", "root=LABEL=linux rootflags=subvol=rw docker_image=",
			fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"docker_image": "x"}`)}}, "docker_image",
			[]string{"empty on the kernel command line", "overrides the config files"}},
		{"image empty in dockroot.json hides docker-btrfs.json", "root=LABEL=linux rootflags=subvol=rw",
			fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"docker_image": ""}`)}, "etc/docker-btrfs.json": {Data: []byte(`{"docker_image": "x"}`)}},
			"docker_image", []string{`docker_image="" (/etc/dockroot.json): is empty`, `"docker_image" of /etc/dockroot.json`}},
		{"no root", "rootflags=subvol=rw docker_image=x", nil, "root",
			[]string{"root: not set", "root=LABEL=", "root=UUID="}},
		{"root empty", "root= rootflags=subvol=rw docker_image=x", nil, "root", []string{"not set"}},
		{"root bare", "root rootflags=subvol=rw docker_image=x", nil, "root", []string{"needs a value", "root=LABEL=linux"}},
		{"root malformed", "root=sda1 rootflags=subvol=rw docker_image=x", nil, "root",
			[]string{`root="sda1"`, "/dev/sda1", "use root=LABEL=linux"}},
		{"root unknown kind", "root=LABLE=linux rootflags=subvol=rw docker_image=x", nil, "root", []string{`unknown kind "LABLE"`}},
		{"toplayer malformed", base + "toplayer=uuid=abc toplayer_path=t", nil, "toplayer",
			[]string{`toplayer="uuid=abc"`, "upper case", "toplayer=LABEL=linux"}},
		{"toplayer_path with ..", base + "toplayer_path=../x", nil, "toplayer_path", []string{`contains ".."`, "toplayer_path=boot_docker"}},
		{"toplayer_path inside the rw layer", base + "toplayer_path=rw/etc", nil, "toplayer_path",
			[]string{"inside the rw layer subvol=rw", "replaced at every boot"}},
		{"toplayer_path containing the rw layer", "root=LABEL=linux docker_image=x rootflags=subvol=machine/rw toplayer_path=machine", nil, "toplayer_path",
			[]string{"contains the rw layer", "copied into itself"}},
		// Issue 17 item 8: names that are dockroot's or Docker's own.
		{"subvol is a rotation name (prev)", "root=LABEL=linux docker_image=x rootflags=subvol=rw.prev.1", nil, "rootflags",
			[]string{"subvol=rw.prev.1", "dockroot's rotation names", "rootflags=subvol=docker_rwlayer"}},
		{"subvol is a rotation name (tmp)", "root=LABEL=linux docker_image=x rootflags=subvol=@/rw.dockroot-tmp", nil, "rootflags",
			[]string{"dockroot's rotation names"}},
		{"subvol is a rotation name (adopted)", "root=LABEL=linux docker_image=x rootflags=subvol=rw.adopted", nil, "rootflags",
			[]string{"dockroot's rotation names"}},
		{"subvol is a rotation name (failed)", "root=LABEL=linux docker_image=x rootflags=subvol=@/rw.failed", nil, "rootflags",
			[]string{"subvol=@/rw.failed", "dockroot's rotation names"}},
		{"subvol inside .dockroot", "root=LABEL=linux docker_image=x rootflags=subvol=.dockroot/x", nil, "rootflags",
			[]string{"subvol=.dockroot/x", "dockroot's own state directory .dockroot"}},
		{"toplayer_path is the Docker data root", base + "toplayer_path=var/lib/docker", nil, "toplayer_path",
			[]string{`toplayer_path="var/lib/docker"`, "Docker data root docker_path=var/lib/docker", "copied into every layer", "toplayer_path=boot_docker"}},
		{"toplayer_path inside the Docker data root", base + "toplayer_path=var/lib/docker/btrfs", nil, "toplayer_path",
			[]string{"Docker data root"}},
		{"toplayer_path containing the Docker data root", base + "toplayer_path=var", nil, "toplayer_path",
			[]string{"Docker data root"}},
		{"toplayer_path is Docker's when docker_path=.", base + "docker_path=. toplayer_path=image/btrfs", nil, "toplayer_path",
			[]string{"Docker data root"}},
		{"toplayer_path is .dockroot", base + "toplayer_path=.dockroot", nil, "toplayer_path",
			[]string{"dockroot's own state directory .dockroot"}},
		{"toplayer_path is a previous layer", base + "toplayer_path=rw.prev.1", nil, "toplayer_path",
			[]string{"previous or unfinished rw layer", "rw.prev.1"}},
		{"toplayer_path inside the unfinished layer", base + "toplayer_path=rw.dockroot-tmp/etc", nil, "toplayer_path",
			[]string{"previous or unfinished rw layer"}},
		{"toplayer_path inside the failed trial's layer", base + "toplayer_path=rw.failed/etc", nil, "toplayer_path",
			[]string{"previous or unfinished rw layer", "rw.failed"}},
		{"podman_path absolute", base + "podman_path=/var/lib/containers/storage", nil, "podman_path", []string{"relative to the top level", "podman_path=var/lib/containers/storage"}},
		{"podman_path with ..", base + "podman_path=../c", nil, "podman_path", []string{`contains ".."`}},
		{"store podman accepted, unknown refused", base + "dockroot.store=podmn", nil, "dockroot.store", []string{"one of auto, graphdriver, containerd, podman"}},
		{"containerd_path absolute", base + "containerd_path=/var/lib/containerd", nil, "containerd_path", []string{"relative to the top level", "containerd_path=var/lib/containerd"}},
		{"containerd_path with ..", base + "containerd_path=a/../../c", nil, "containerd_path", []string{`contains ".."`}},
		{"resume_offset negative", base + "resume=/dev/vda3 resume_offset=-8", nil, "resume_offset", []string{"negative", "resume_offset=34816"}},
		{"resume_offset not a number", base + "resume=/dev/vda3 resume_offset=0x10", nil, "resume_offset", []string{"not a whole number"}},
		{"rootfstype not btrfs", base + "rootfstype=ext4", nil, "rootfstype", []string{`rootfstype="ext4"`, "only on btrfs", "rootfstype=btrfs"}},
		{"keep not a number", base + "dockroot.keep=abc", nil, "dockroot.keep",
			[]string{`dockroot.keep="abc" (kernel command line)`, `"abc" is not a whole number`, "use dockroot.keep=1 (a whole number >= 0)"}},
		{"keep negative", base + "dockroot.keep=-1", nil, "dockroot.keep", []string{`dockroot.keep="-1"`, "negative", "dockroot.keep=1"}},
		{"keep bare", base + "dockroot.keep", nil, "dockroot.keep", []string{"needs a value", "dockroot.keep=1"}},
		{"tries not a number", base + "dockroot.tries=3x", nil, "dockroot.tries", []string{`"3x" is not a whole number`, "dockroot.tries=3"}},
		{"tries negative", base + "dockroot.tries=-2", nil, "dockroot.tries", []string{"negative"}},
		{"timeout not a number", base + "dockroot.timeout=1.5", nil, "dockroot.timeout", []string{`"1.5" is not a whole number`, "seconds"}},
		{"timeout negative", base + "dockroot.timeout=-1", nil, "dockroot.timeout", []string{"negative", "dockroot.timeout=30"}},
		{"timeout huge", base + "dockroot.timeout=99999999999999", nil, "dockroot.timeout", []string{"too long"}},
		{"rootdelay not a number", base + "rootdelay=soon", nil, "rootdelay", []string{`"soon" is not a whole number`, "rootdelay=5"}},
		{"rootdelay negative", base + "rootdelay=-3", nil, "rootdelay", []string{"negative"}},
		{"rootwait garbage", base + "rootwait=x", nil, "rootwait", []string{"not a whole number"}},
		{"onfail unknown", base + "dockroot.onfail=panic", nil, "dockroot.onfail",
			[]string{`dockroot.onfail="panic"`, "shell, reboot, halt, previous", "dockroot.onfail=shell"}},
		{"store unknown", base + "dockroot.store=overlay2", nil, "dockroot.store", []string{"auto, graphdriver"}},
		{"init relative", base + "init=sbin/init", nil, "init", []string{"not an absolute path", "init=/sbin/init"}},
		{"init empty", base + "init=", nil, "init", []string{"is empty", "init=/sbin/init"}},
		{"noresume garbage", base + "noresume=maybe", nil, "noresume", []string{"yes/no"}},
		{"keep wrong in the file", base, fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"keep": -4}`)}}, "dockroot.keep",
			[]string{`dockroot.keep="-4" (/etc/dockroot.json)`, `correct "keep" in /etc/dockroot.json`, "override it on the kernel command line"}},
		{"keep fractional in the file", base, fstest.MapFS{"etc/dockroot.json": {Data: []byte(`{"keep": 1.5}`)}}, "dockroot.keep",
			[]string{`"1.5" is not a whole number`, "/etc/dockroot.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.cmdline, tt.fsys)
			if err == nil {
				t.Fatalf("Load(%q) succeeded, want a problem with %s", tt.cmdline, tt.key)
			}
			var found *ValidationError
			for _, p := range Problems(err) {
				if p.Key == tt.key {
					found = p
				}
			}
			if found == nil {
				t.Fatalf("Load(%q) = %v; want a problem with %s", tt.cmdline, err, tt.key)
			}
			msg := found.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q spans lines; /dev/kmsg wants one record per line", msg)
			}
		})
	}
}

// TestValidateAll checks that Validate reports every problem, not just the
// first, and that a good config has none.
func TestValidateAll(t *testing.T) {
	_, err := Load("rootfstype=ext4 docker_path=/x dockroot.keep=-1 dockroot.onfail=x dockroot.store=y", nil)
	keys := map[string]bool{}
	for _, p := range Problems(err) {
		keys[p.Key] = true
	}
	for _, k := range []string{"root", "rootfstype", "docker_path", "rootflags", "docker_image", "dockroot.keep", "dockroot.onfail", "dockroot.store"} {
		if !keys[k] {
			t.Errorf("Load: no problem reported for %s in %v", k, err)
		}
	}
	if _, err := Load(base, nil); err != nil {
		t.Errorf("Load(%q) = %v, want no error", base, err)
	}
}

func TestValidateHandMadeConfig(t *testing.T) {
	c := Defaults()
	c.Root, c.Subvol, c.Image = "LABEL=x", "layer", "img"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Tries, c.Timeout = -1, -1
	var ve *ValidationError
	if err := c.Validate(); !errors.As(err, &ve) || len(Problems(err)) != 2 {
		t.Errorf("Validate = %v, want two *ValidationError", err)
	}
}

func TestLoadQuoteErrorStillGivesOnFail(t *testing.T) {
	c, err := Load(base+`dockroot.onfail=reboot x="oops`, nil)
	var qe *QuoteError
	if !errors.As(err, &qe) {
		t.Fatalf("Load: %v, want a *QuoteError", err)
	}
	if c == nil || c.OnFail != OnFailReboot {
		t.Errorf("Load with an open quote: OnFail = %v, want reboot from before the quote", c)
	}
}

func TestCheckFile(t *testing.T) {
	tests := []struct {
		json    string
		ok      bool
		want    string // in the error or a warning
		warning bool
	}{
		{`{"keep": 2, "onfail": "halt"}`, true, "", false}, // root, rootflags, image may come from the cmdline
		{`{"keep": -1}`, false, "negative", false},
		{`{"onfail": "explode"}`, false, "shell, reboot, halt, previous", false},
		{`{"docker_path": "/var/lib/docker"}`, false, "absolute", false},
		{`{"rootflags": "subvol=/"}`, false, "top level", false},
		{`{"kep": 2}`, true, `did you mean "keep"?`, true},
		{`{"keep": "2"}`, false, `field "keep" must be a whole number, got "2"`, false},
		{`{"keep": 2,}`, false, "test.json:1:12", false},
	}
	for _, tt := range tests {
		warnings, err := CheckFile("test.json", []byte(tt.json))
		if tt.ok != (err == nil) {
			t.Errorf("CheckFile(%s) = %v, want ok=%v", tt.json, err, tt.ok)
			continue
		}
		text := strings.Join(warnings, "\n")
		if !tt.warning && err != nil {
			text = err.Error()
		}
		if !strings.Contains(text, tt.want) {
			t.Errorf("CheckFile(%s): %q lacks %q", tt.json, text, tt.want)
		}
	}
}
