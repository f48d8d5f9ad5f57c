package images

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dockroot/dockroot/snapshot"
	"github.com/moby/moby/client"
)

// apiTimeout bounds the whole conversation with dockerd: a handful of
// requests to a local daemon.
const apiTimeout = 30 * time.Second

// ListAPI lists the tags dockerd at host (a DOCKER_HOST URL, "" for
// the default socket) knows, with the image IDs and creation times it
// reports. The API does not say where the btrfs driver keeps an image's
// root filesystem (the driver's GraphDriver.Data is empty), so the
// subvolume, and with it the kernels and any reason the image cannot
// boot, still come from the store files at dockerRoot, matched by
// reference and image ID.
func ListAPI(ctx context.Context, host, dockerRoot string) ([]Row, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	opts := []client.Opt{}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	} else {
		host = client.DefaultDockerHost
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker API client for %s: %w", host, err)
	}
	defer c.Close()

	info, err := c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("ask dockerd at %s: %w; is it running (systemctl status docker)? Without it, use --source files", host, err)
	}
	if err := checkDaemon(host, info.Info.Driver, info.Info.DockerRootDir, dockerRoot); err != nil {
		return nil, err
	}
	list, err := c.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images of dockerd at %s: %w", host, err)
	}
	created := map[string]time.Time{}
	var tagged []apiTag
	for _, img := range list.Items {
		for _, ref := range append(append([]string{}, img.RepoTags...), img.RepoDigests...) {
			if ref == "<none>:<none>" || ref == "<none>@<none>" {
				continue // untagged (dangling) images: nothing boots them by name
			}
			tagged = append(tagged, apiTag{ref: ref, id: img.ID})
		}
		if _, done := created[img.ID]; done || len(img.RepoTags)+len(img.RepoDigests) == 0 {
			continue
		}
		// The list has whole seconds; the image's own record has the
		// config's full timestamp, as the files do.
		ins, err := c.ImageInspect(ctx, img.ID)
		if err != nil {
			return nil, fmt.Errorf("inspect image %s on dockerd at %s: %w", img.ID, host, err)
		}
		t, err := time.Parse(time.RFC3339Nano, ins.Created)
		if err != nil {
			return nil, fmt.Errorf("image %s on dockerd at %s: created %q: %w", img.ID, host, ins.Created, err)
		}
		created[img.ID] = t
	}

	files, err := filesByRef(dockerRoot)
	if err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(tagged))
	for _, tg := range tagged {
		rows = append(rows, tg.row(created[tg.id], files, dockerRoot))
	}
	sortRows(rows)
	return rows, nil
}

// apiTag is one reference dockerd lists, and its image ID.
type apiTag struct{ ref, id string }

// row is the tag as dockerd reports it, joined with what the store files
// at dockerRoot hold for the same reference and image ID.
func (tg apiTag) row(created time.Time, files map[string]snapshot.Image, dockerRoot string) Row {
	full := tg.ref
	if r, err := snapshot.ParseRef(tg.ref); err == nil {
		full = r.String()
	}
	img, ok := files[full]
	switch {
	case !ok:
		img = snapshot.Image{Ref: full, Problem: fmt.Sprintf("dockerd lists %s but the store files in %s do not: dockerd changed them after this was read, or its data root is another directory", tg.ref, dockerRoot)}
	case img.ID != tg.id:
		img = snapshot.Image{Ref: full, Problem: fmt.Sprintf("dockerd says %s is %s, the store files in %s say %s: the tag moved while this was read; run images again", tg.ref, tg.id, dockerRoot, img.ID)}
	}
	img.ID, img.Created = tg.id, created
	return newRow(img)
}

// filesByRef reads the store files at dockerRoot, by full reference.
func filesByRef(dockerRoot string) (map[string]snapshot.Image, error) {
	imgs, err := storeImages(dockerRoot)
	if err != nil {
		return nil, err
	}
	out := make(map[string]snapshot.Image, len(imgs))
	for _, img := range imgs {
		out[img.Ref] = img
	}
	return out, nil
}

// checkDaemon refuses a daemon whose images are not the files at
// dockerRoot: another storage driver, or another data root (compared as
// files, so a symlinked or bind-mounted path is the same root).
func checkDaemon(host, driver, daemonRoot, dockerRoot string) error {
	if driver != "btrfs" {
		return fmt.Errorf("dockerd at %s uses the %s storage driver; dockroot boots the btrfs driver's subvolumes: "+
			"set {\"storage-driver\": \"btrfs\"} in /etc/docker/daemon.json and restart dockerd (run dockroot doctor for details)", host, driver)
	}
	a, errA := os.Stat(daemonRoot)
	b, errB := os.Stat(dockerRoot)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		return fmt.Errorf("dockerd at %s keeps its images in %s, not in --docker-root %s: pass --docker-root %s, or --host of the daemon that uses %s",
			host, daemonRoot, dockerRoot, daemonRoot, dockerRoot)
	}
	return nil
}
