package commands

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// syncBuffer is a bytes.Buffer the watcher writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatchRoot runs dockroot watch against a real dockerd and builds,
// tags, untags and removes images while it runs, checking the menu it
// rewrites after each.
func TestWatchRoot(t *testing.T) {
	testenv.RequireRoot(t, "dockerd", "docker", "depmod")
	cache, err := vmkit.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, err := vmkit.FetchKernel(cache)
	if err != nil {
		t.Skipf("root tier: Debian's kernel package is not available: %v", err)
	}
	b := testenv.NewBtrfs(t, 2048, "linux")
	d := testenv.StartDockerd(t, filepath.Join(b.Mnt, "var/lib/docker"))
	fx := d.BuildFixtures(t)
	boot := t.TempDir()
	menu := filepath.Join(t.TempDir(), "custom.cfg")
	bootJSON := filepath.Join(t.TempDir(), "boot.json")
	env := []string{"DOCKROOT_INIT=" + standIn(t), "DOCKER_HOST=unix://" + d.Socket}

	stable := buildKernelImage(t, d, fx.Base, k, "desk:stable", "stable")
	for _, args := range [][]string{
		{"install", "desk:stable", "--boot-dir", boot, "--docker-root", d.Root},
		{"menu", "--bootloader", "grub", "--grub-style", "cfg", "--root", "LABEL=linux", "--rwlayer", "rw",
			"--boot-dir", boot, "--loader-path", "/dockroot", "-o", menu},
	} {
		if code, out, errs := runCLI(env, args...); code != 0 {
			t.Fatalf("dockroot %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	writeBootRecord(t, bootJSON, "desk:stable", stable, stable)

	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(&Context{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Env: env,
			Args: []string{"watch", "--boot-dir", boot, "--boot-json", bootJSON, "--debounce", "500ms"}}, testVersion)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("watch exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("watch did not stop within 30 s of its context")
		}
		t.Logf("watch's log:\n%s", out.String())
	}()

	// waitMenu waits until the menu boots exactly want (and is dockroot's,
	// unedited), and the log has a line holding logged.
	waitMenu := func(step, logged string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			data, _ := os.ReadFile(menu)
			got := menuImages(string(data))
			if strings.Join(got, " ") == strings.Join(want, " ") && strings.Contains(out.String(), logged) {
				if bootmenu.ClassifyMenu(data) != bootmenu.MenuGenerated {
					t.Fatalf("%s: the menu is not one dockroot wrote:\n%s", step, data)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: menu boots %v, want %v; watch's log:\n%s", step, got, want, out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitMenu("start", "watching dockerd", "desk:stable")

	buildKernelImage(t, d, fx.Base, k, "desk:experimental", "experimental")
	waitMenu("build -t desk:experimental", "installed desk:experimental", "desk:experimental", "desk:stable")

	d.Docker(t, "tag", "desk:experimental", "desk:copy")
	waitMenu("tag desk:copy", "installed desk:copy", "desk:copy", "desk:experimental", "desk:stable")

	d.Docker(t, "rmi", "desk:copy") // untag: desk:experimental still names the image
	waitMenu("untag desk:copy", "removed desk:copy", "desk:experimental", "desk:stable")
	if _, err := os.Stat(bootmenu.InstalledDir(boot, "desk:copy")); err == nil {
		t.Errorf("desk:copy's directory is still in %s", boot)
	}

	d.Docker(t, "rmi", "desk:experimental") // the image goes too
	waitMenu("rmi desk:experimental", "removed desk:experimental", "desk:stable")

	// The running (and last good) image's tag: its entry stays.
	d.Docker(t, "rmi", "desk:stable")
	waitMenu("rmi desk:stable", "kept desk:stable", "desk:stable")
	if _, err := d.Run(nil, "image", "inspect", stable); err != nil {
		t.Errorf("the running image is gone after rmi of its tag: %v", err)
	}

	// Images without a kernel get no entry.
	d.Docker(t, "tag", fx.Desk1, "nokernel:1")
	time.Sleep(2 * time.Second)
	waitMenu("tag nokernel:1", "kept desk:stable", "desk:stable")
}

// menuImages lists the docker_image= of every image entry in a GRUB menu
// (not the previous-layer entry), in menu order.
func menuImages(menu string) []string {
	var refs []string
	for _, line := range strings.Split(menu, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "linux ") || strings.Contains(line, "dockroot.layer=previous") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if r, ok := strings.CutPrefix(strings.Trim(f, "'"), "docker_image="); ok {
				refs = append(refs, r)
			}
		}
	}
	return refs
}
