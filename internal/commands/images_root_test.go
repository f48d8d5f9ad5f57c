package commands

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/images"
	"github.com/dockroot/dockroot/internal/testenv"
)

// TestImagesRoot compares `dockroot images`, read offline from the store
// files, with what a private dockerd says about the same images.
func TestImagesRoot(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker", "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 1024, "")
	root := filepath.Join(b.Mnt, "var/lib/docker")
	d := testenv.StartDockerd(t, root)
	fx := d.BuildFixtures(t)
	// An image with a kernel the way Debian's linux-image package lays it
	// out, and one the Fedora/Arch way without modules in the image.
	const kver, kver2 = "6.1.0-99-test", "6.12.1-arch1"
	if _, err := d.Run(strings.NewReader("FROM "+fx.Base+"\n"+
		"RUN mkdir -p /boot /lib/modules/"+kver+" && echo kernel > /boot/vmlinuz-"+kver+" && echo dep > /lib/modules/"+kver+"/modules.dep\n"),
		"build", "-t", "kern:1", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Run(strings.NewReader("FROM "+fx.Base+"\nRUN mkdir -p /usr/lib/modules/"+kver2+" && echo kernel > /usr/lib/modules/"+kver2+"/vmlinuz\n"),
		"build", "-t", "kern:2", "-"); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := drive("images", "--docker-root", root, "--json")
	if code != 0 {
		t.Fatalf("images --json: exit %d: %s", code, stderr)
	}
	var rows []images.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("images --json output: %v\n%s", err, out)
	}
	got := map[string]images.Row{}
	var tags []string
	for _, r := range rows {
		got[r.Ref] = r
		if !strings.Contains(r.Ref, "@") {
			tags = append(tags, r.Ref)
		}
	}

	// The same tags as docker images, each with docker's image ID and
	// creation time.
	var want []string
	for _, line := range strings.Split(d.Docker(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasSuffix(f[0], ":<none>") {
			continue
		}
		want = append(want, f[0])
		r, ok := got[f[0]]
		if !ok {
			t.Errorf("docker lists %s, dockroot images does not", f[0])
			continue
		}
		if r.ID != f[1] {
			t.Errorf("%s: ID %s, docker says %s", f[0], r.ID, f[1])
		}
		created, err := time.Parse(time.RFC3339Nano, d.Docker(t, "image", "inspect", "--format", "{{.Created}}", f[0]))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Created.Equal(created) {
			t.Errorf("%s: created %v, docker says %v", f[0], r.Created, created)
		}
	}
	sort.Strings(want)
	sort.Strings(tags)
	if strings.Join(tags, " ") != strings.Join(want, " ") {
		t.Errorf("tags %q, docker images lists %q", tags, want)
	}

	for ref, wantK := range map[string]string{"kern:1": kver, "kern:2": kver2, "desk:1": "", fx.Base: ""} {
		if k := strings.Join(got[ref].Kernels, ","); k != wantK {
			t.Errorf("%s: kernels %q, want %q", ref, k, wantK)
		}
	}
	if m := got["kern:1"].Modules; len(m) != 1 || m[0] != kver {
		t.Errorf("kern:1 modules %v, want %s", m, kver)
	}
	if len(got["kern:2"].Modules) != 0 {
		t.Errorf("kern:2 has no lib/modules, but modules %v", got["kern:2"].Modules)
	}
	if got[fx.Zero].Problem == "" {
		t.Errorf("%s has no layers but no problem is shown", fx.Zero)
	}

	// The table: one aligned row per tag, the problems in NOTE.
	code, out, stderr = drive("images", "--docker-root", root, "--source", "files")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != len(rows)+1 || !strings.HasPrefix(lines[0], "REF") {
		t.Fatalf("images: exit %d\n%s", code, out)
	}
	col := strings.Index(lines[0], "IMAGE ID")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("IMAGE ID column not aligned at %d in %q", col, l)
		}
		if strings.HasPrefix(l, "kern:2 ") && !strings.Contains(l, "has no lib/modules/"+kver2) {
			t.Errorf("kern:2 row lacks the missing-modules note: %q", l)
		}
	}
	t.Logf("dockroot images:\n%s", out)

	// The daemon's API gives the same answer as the files, in both forms.
	host := "unix://" + d.Socket
	for _, form := range [][]string{{"--json"}, nil} {
		args := append([]string{"images", "--docker-root", root}, form...)
		_, files, _ := drive(args...)
		code, api, stderr := drive(append(args, "--source", "api", "--host", host)...)
		if code != 0 || api != files {
			t.Errorf("%s --source api: exit %d: %s\n%s\nthe files say:\n%s", strings.Join(args, " "), code, stderr, api, files)
		}
	}
	// A daemon whose data root is not --docker-root is refused, not mixed.
	other := t.TempDir()
	code, _, stderr = drive("images", "--docker-root", other, "--source", "api", "--host", host)
	if code != 1 || !strings.Contains(stderr, "pass --docker-root "+root) {
		t.Errorf("images --source api with another data root: exit %d: %s", code, stderr)
	}
}

// podmanStore is a rootful podman's btrfs store on a loop btrfs, with the
// fixture images, and an empty Docker data root beside it.
type podmanStore struct {
	Root, DockerRoot string
	P                *testenv.Podman
	Fixtures         testenv.PodmanFixtures
}

func newPodmanStore(t *testing.T) *podmanStore {
	t.Helper()
	testenv.RequireRoot(t, "podman", "mkfs.btrfs", "losetup")
	b := testenv.NewBtrfs(t, 1024, "")
	s := &podmanStore{Root: filepath.Join(b.Mnt, "var/lib/containers/storage"), DockerRoot: filepath.Join(b.Mnt, "var/lib/docker")}
	s.P = testenv.NewPodman(t, s.Root)
	s.Fixtures = s.P.BuildFixtures(t)
	return s
}

// TestImagesPodmanRoot: `dockroot images` lists a Podman store's images
// with their store, in --json and in the table.
func TestImagesPodmanRoot(t *testing.T) {
	s := newPodmanStore(t)
	code, out, stderr := drive("images", "--docker-root", s.DockerRoot, "--podman-root", s.Root, "--json")
	if code != 0 {
		t.Fatalf("images --json: exit %d: %s", code, stderr)
	}
	var rows []images.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("images --json output: %v\n%s", err, out)
	}
	var refs []string
	for _, r := range rows {
		if r.Store != "podman" {
			t.Errorf("%s: store %q, want podman", r.Ref, r.Store)
		}
		if r.ID == s.Fixtures.IDs[s.Fixtures.Desk1] && strings.Contains(r.FullRef, "desk:1") {
			refs = append(refs, r.FullRef)
		}
	}
	if len(refs) == 0 {
		t.Errorf("no row for %s (%s) in\n%s", s.Fixtures.Desk1, s.Fixtures.IDs[s.Fixtures.Desk1], out)
	}
	code, out, stderr = drive("images", "--docker-root", s.DockerRoot, "--podman-root", s.Root, "--store", "podman")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != len(rows)+1 || !strings.HasPrefix(lines[0], "REF") || !strings.Contains(lines[0], "STORE") {
		t.Fatalf("images --store podman: exit %d: %s\n%s", code, stderr, out)
	}
	t.Logf("dockroot images:\n%s", out)
	// Docker's store alone: Podman's images are not there.
	code, _, stderr = drive("images", "--docker-root", s.DockerRoot, "--podman-root", s.Root, "--store", "graphdriver")
	if code != 1 || !strings.Contains(stderr, "--docker-root") {
		t.Errorf("images --store graphdriver: exit %d: %s", code, stderr)
	}
}
