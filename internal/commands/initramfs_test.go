package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tests must not depend on this machine's /etc/docker-btrfs.json: the
// verb bakes it in by default. TestInitramfsAncestorConfig points it at
// files of its own.
func init() { hostDockerBtrfsJSON = "/nonexistent/dockroot-test/docker-btrfs.json" }

// The ancestor's /etc/docker-btrfs.json is baked in when it exists, so its
// kernel command line, which names no image, boots as it did; it can be
// named or left out, and a bad one fails the build, not the boot.
func TestInitramfsAncestorConfig(t *testing.T) {
	root, init := emptyKernelRoot(t), standIn(t)
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("docker-btrfs.json", `{"docker_image": "archlinux/base", "docker_tag": "latest"}`)
	other := write("other.json", `{"docker_image": "desk", "docker_tag": "2"}`)
	bad := write("bad.json", `{"docker_image": "desk:1", "docker_tag": "2"}`)
	saved := hostDockerBtrfsJSON
	t.Cleanup(func() { hostDockerBtrfsJSON = saved })

	tests := []struct {
		name     string
		host     string // hostDockerBtrfsJSON
		args     []string
		code     int
		baked    string // content of etc/docker-btrfs.json, "" for none
		stdout   string
		stderr   string
		noStdout string
	}{
		{name: "host file baked by default", host: good, code: 0, baked: `{"docker_image": "archlinux/base", "docker_tag": "latest"}`,
			stdout: "baking in " + good + " (the ancestor's image setting); --docker-btrfs-json= leaves it out"},
		{name: "no host file", host: filepath.Join(dir, "absent.json"), code: 0, noStdout: "baking in"},
		{name: "left out", host: good, args: []string{"--docker-btrfs-json="}, code: 0, noStdout: "baking in"},
		{name: "named", host: good, args: []string{"--docker-btrfs-json", other}, code: 0, baked: `{"docker_image": "desk", "docker_tag": "2"}`, noStdout: "baking in"},
		{name: "named but missing", host: good, args: []string{"--docker-btrfs-json", filepath.Join(dir, "typo.json")}, code: 1,
			stderr: "--docker-btrfs-json: stat " + filepath.Join(dir, "typo.json") + ": no such file or directory"},
		{name: "ambiguous", host: bad, code: 1,
			stderr: `add config: invalid config: ` + bad + `:1:18: docker_image "desk:1" already has a tag or digest, and docker_tag is "2" too; keep one of them; fix the file (it is baked by ` + "`dockroot initramfs --docker-btrfs-json`" + `) and rebuild the initramfs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hostDockerBtrfsJSON = tt.host
			out := filepath.Join(t.TempDir(), "img")
			args := append([]string{"initramfs", "-o", out, "--root", root, "--init", init}, tt.args...)
			code, stdout, stderr := runCLI(nil, args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) ||
				(tt.noStdout != "" && strings.Contains(stdout, tt.noStdout)) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			if code != 0 {
				return
			}
			got, found := initramfsFiles(t, out)["etc/docker-btrfs.json"]
			if string(got) != tt.baked || found != (tt.baked != "") {
				t.Errorf("etc/docker-btrfs.json in the image: %q (present %v), want %q", got, found, tt.baked)
			}
		})
	}
}
