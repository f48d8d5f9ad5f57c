package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/bootmenu"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
)

// TagRow is the time to resolve one tag with Tags tags in repositories.json.
type TagRow struct {
	Tags         int   `json:"tags"`
	ReposJSON    int64 `json:"repositories_json_bytes"`
	Resolve      Stat  `json:"resolve"`
	ShellLookup  Stat  `json:"shell_jq_lookup"` // the ancestor's jq read of the same tag
	ResolveCalls int   `json:"runs"`
}

// MenuRow is the time to make and render the boot menu for Tags installed
// tags: read every entry.json, build the entries, render GRUB, rEFInd and
// BLS.
type MenuRow struct {
	Tags int  `json:"tags"`
	Menu Stat `json:"menu"`
}

// tagger tags images through the private dockerd's API: one HTTP request
// per tag, where the docker CLI would start a process per tag.
type tagger struct{ c *http.Client }

func newTagger(d *testenv.Dockerd) *tagger {
	return &tagger{c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		}}}}
}

// tag gives image id the name repo:tag (POST /images/{name}/tag).
func (t *tagger) tag(id, repo, tag string) error {
	u := fmt.Sprintf("http://docker/images/%s/tag?%s", id, url.Values{"repo": {repo}, "tag": {tag}}.Encode())
	resp, err := t.c.Post(u, "text/plain", nil)
	if err != nil {
		return fmt.Errorf("tag %s as %s:%s: %w", id, repo, tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("tag %s as %s:%s: %s: %s", id, repo, tag, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// benchTags measures section 7's resolution half: one image tagged more
// and more times, and Resolve of one of those tags at each count.
func (b *bench) benchTags() error {
	img := b.images[0]
	id, err := b.dockerd.Run(nil, "image", "inspect", "--format", "{{.Id}}", img.Ref)
	if err != nil {
		return err
	}
	id = strings.TrimSpace(id)
	tg := newTagger(b.dockerd)
	const repo = "bench/tagged"
	want := repo + ":t0001" // present from 2 tags on
	tagged := 0
	db := filepath.Join(b.fs.Dir, dockerPath, "image", "btrfs")
	for _, n := range b.opts.TagCounts {
		for ; tagged < n; tagged++ {
			if err := tg.tag(id, repo, fmt.Sprintf("t%04d", tagged)); err != nil {
				return err
			}
		}
		// The tags count only once dockerd has written them out.
		fi, err := os.Stat(filepath.Join(db, "repositories.json"))
		if err != nil {
			return err
		}
		row := TagRow{Tags: n, ReposJSON: fi.Size(), ResolveCalls: 21}
		var runs, shell []float64
		for i := 0; i < row.ResolveCalls; i++ {
			var got *snapshot.Image
			t, err := timeIt(func() error {
				got, err = graphdriver.New(b.fs.Dir, dockerPath).Resolve(want)
				return err
			})
			if err != nil {
				return fmt.Errorf("resolve %s with %d tags: %w", want, n, err)
			}
			if got.ID != id {
				return fmt.Errorf("resolve %s with %d tags: got image %s, want %s", want, n, got.ID, id)
			}
			runs = append(runs, t)
			t, err = timeIt(func() error {
				_, err := testenv.Output("jq", "-r", "--arg", "r", repo, "--arg", "rt", want, ".Repositories[$r][$rt]", filepath.Join(db, "repositories.json"))
				return err
			})
			if err != nil {
				return err
			}
			shell = append(shell, t)
		}
		row.Resolve, row.ShellLookup = newStat(runs), newStat(shell)
		b.logf("resolve with %4d tags (repositories.json %s): %s (jq lookup %s)", n, fmtBytes(row.ReposJSON), fmtMS(row.Resolve.Median), fmtMS(row.ShellLookup.Median))
		b.res.Tags = append(b.res.Tags, row)
	}
	return nil
}

// benchMenu measures section 7's menu half: a boot directory with n
// installed tags, read and rendered for all three bootloaders.
func (b *bench) benchMenu() error {
	for _, n := range b.opts.MenuCounts {
		boot := filepath.Join(b.work, fmt.Sprintf("boot-%d", n))
		for i := 0; i < n; i++ {
			ref := fmt.Sprintf("desk/app:%04d", i)
			dir := bootmenu.InstalledDir(boot, ref)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for _, f := range []string{bootmenu.KernelFile, bootmenu.InitrdFile} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("not a kernel\n"), 0o644); err != nil {
					return err
				}
			}
			if _, err := bootmenu.WriteInstalled(boot, bootmenu.Installed{
				Ref: ref, ImageID: "sha256:" + strings.Repeat("ab", 32), KernelVersion: "6.1.0-56-amd64",
			}); err != nil {
				return err
			}
		}
		params := bootmenu.Params{Root: "LABEL=linux", RWLayer: "docker_rwlayer", DockerPath: "docker",
			ToplayerPath: "boot_docker", LoaderPath: "/dockroot", Extra: []string{"quiet"}}
		var runs []float64
		for i := 0; i < 21; i++ {
			t, err := timeIt(func() error { return renderMenus(boot, params, n) })
			if err != nil {
				return fmt.Errorf("boot menu for %d tags: %w", n, err)
			}
			runs = append(runs, t)
		}
		row := MenuRow{Tags: n, Menu: newStat(runs)}
		b.logf("menu for %d tags (GRUB, rEFInd, BLS): %s", n, fmtMS(row.Menu.Median))
		b.res.Menu = append(b.res.Menu, row)
		if err := os.RemoveAll(boot); err != nil {
			return err
		}
	}
	return nil
}

// renderMenus is what `dockroot menu` does for the three loaders.
func renderMenus(boot string, params bootmenu.Params, want int) error {
	installed, err := bootmenu.ReadInstalled(boot)
	if err != nil {
		return err
	}
	entries, err := bootmenu.Entries(installed, params)
	if err != nil {
		return err
	}
	if len(entries) < want {
		return fmt.Errorf("%d entries for %d installed tags", len(entries), want)
	}
	if err := bootmenu.RenderGRUB(io.Discard, entries, bootmenu.GRUBScript); err != nil {
		return err
	}
	if err := bootmenu.RenderRefind(io.Discard, entries); err != nil {
		return err
	}
	_, err = bootmenu.RenderBLS(entries)
	return err
}
