package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/internal/testenv"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/containerd"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
	"github.com/dockroot/dockroot/snapshot/podman"
	"github.com/dockroot/dockroot/tests/vm/vmkit"
)

// Section 7c (issue 14): Resolve of one tag with few and many tags in each
// image store, on a loop btrfs of its own, so that `-only stores` needs
// nothing from the other sections.
const (
	// docker29Path is Docker 29's data root on the section's btrfs; the
	// classic store keeps docker_path='s default, so both fit on one
	// filesystem. Its managed containerd's root is below it.
	docker29Path = "srv/docker29"
	storesLoopMB = 1536
	storesRepo   = "bench/tagged"
)

// StoresResult is section 7c: per store, Resolve of one tag as the store
// holds more and more tags of one image, and what the containerd store's
// bbolt reader adds to dockroot-init.
type StoresResult struct {
	Image  string       `json:"image"` // what was tagged
	Runs   int          `json:"runs"`
	Stores []StoreBench `json:"stores"`
	Bbolt  *BinaryCost  `json:"bbolt_cost,omitempty"`
	// BboltErr says why Bbolt is missing.
	BboltErr string `json:"bbolt_cost_error,omitempty"`
}

// StoreBench is one store's rows.
type StoreBench struct {
	Store string `json:"store"` // layout.Store*
	Index string `json:"index"` // the file the store keeps its names in
	How   string `json:"how"`   // how the tags were made
	Rows  []StoreTagRow
	// Skipped says why the store was not measured.
	Skipped string `json:"skipped,omitempty"`
}

// StoreTagRow is Resolve of one tag while the store holds Tags tags.
type StoreTagRow struct {
	Tags       int   `json:"tags"`
	IndexBytes int64 `json:"index_bytes"`
	Resolve    Stat  `json:"resolve"`
}

// ratio is the median at the most tags over the median at the fewest.
func (s StoreBench) ratio() float64 {
	if len(s.Rows) < 2 {
		return 0
	}
	return ratio(s.Rows[len(s.Rows)-1].Resolve.Median, s.Rows[0].Resolve.Median)
}

// BinaryCost is what go.etcd.io/bbolt (and the containerd store that uses
// it) adds to dockroot-init: the sizes of their symbols in an unstripped
// build (`go tool nm -size`), next to the stripped binary the initramfs
// holds. Symbols leave out the line tables and type metadata the linker
// adds per function, so this is a lower bound.
type BinaryCost struct {
	InitBytes     int64  `json:"init_bytes"`          // stripped (-s -w), as in the initramfs
	SymbolBytes   int64  `json:"symbol_bytes"`        // every symbol of the unstripped build
	Bbolt         int64  `json:"bbolt_symbol_bytes"`  // go.etcd.io/bbolt
	BboltSymbols  int    `json:"bbolt_symbols"`       //
	Reader        int64  `json:"reader_symbol_bytes"` // snapshot/containerd, the store on top of bbolt
	ReaderSymbols int    `json:"reader_symbols"`      //
	Arch          string `json:"arch"`
}

// taggedStore is one store under test: how to tag its image up to n tags,
// what to resolve, and where its index is.
type taggedStore struct {
	bench   *StoreBench
	tagTo   func(n int) error // make tags t0000 … t<n-1>
	offline func() error      // stop what holds the store's files before timing (may be nil)
	want    string            // the reference resolved
	id      string            // the image ID Resolve must return
	index   string            // absolute path of the index file
	open    func() snapshot.Store
}

// benchStores measures section 7c on a loop btrfs of its own.
func (b *bench) benchStores() error {
	mark := b.cl.mark()
	defer func() {
		if err := b.cl.runFrom(mark, b.logf); err != nil {
			b.logf("7c: release: %v", err)
		}
	}()
	dir := filepath.Join(b.cacheDir, "stores")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mnt, err := newLoopBtrfs(b.cl, dir, storesLoopMB)
	if err != nil {
		return err
	}
	runs := max(b.opts.StoreRuns, 1)
	res := &StoresResult{Image: "a busybox image of one layer (the 2 MB image of section 1, imported)", Runs: runs}
	b.res.Stores = res
	if res.Bbolt, err = bboltCost(b.work); err != nil {
		res.BboltErr = err.Error()
		b.logf("7c: bbolt size: %v", err)
	}
	work := filepath.Join(b.work, "stores")
	kinds := []func(string) (*taggedStore, error){
		func(w string) (*taggedStore, error) { return b.classicStore(mnt, w) },
		func(w string) (*taggedStore, error) { return b.podmanStore(mnt, w) },
		func(w string) (*taggedStore, error) { return b.containerdStore(mnt, w) },
	}
	var failed []string
	for i, kind := range kinds {
		storeMark := b.cl.mark()
		ts, err := kind(filepath.Join(work, strconv.Itoa(i)))
		if err == nil && ts.bench.Skipped == "" {
			err = b.timeStore(ts, runs)
		}
		if ts != nil {
			res.Stores = append(res.Stores, *ts.bench)
		}
		if err != nil {
			failed = append(failed, err.Error())
		}
		// Each store's daemon stops before the next store is measured.
		if err := b.cl.runFrom(storeMark, b.logf); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

// timeStore tags, then times Resolve, at each of the tag counts.
func (b *bench) timeStore(ts *taggedStore, runs int) error {
	for _, n := range b.opts.TagCounts {
		t0 := time.Now()
		if err := ts.tagTo(n); err != nil {
			return fmt.Errorf("%s: tag to %d: %w", ts.bench.Store, n, err)
		}
		tagSecs := time.Since(t0).Seconds()
		if ts.offline != nil {
			if err := ts.offline(); err != nil {
				return fmt.Errorf("%s: %w", ts.bench.Store, err)
			}
		}
		row := StoreTagRow{Tags: n}
		if fi, err := os.Stat(ts.index); err == nil {
			row.IndexBytes = fi.Size()
		}
		var times []float64
		for i := 0; i < runs; i++ {
			var got *snapshot.Image
			t, err := timeIt(func() error {
				var err error
				got, err = ts.open().Resolve(ts.want)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: resolve %s with %d tags: %w", ts.bench.Store, ts.want, n, err)
			}
			if trimID(got.ID) != trimID(ts.id) {
				return fmt.Errorf("%s: resolve %s with %d tags: got image %s, want %s", ts.bench.Store, ts.want, n, got.ID, ts.id)
			}
			times = append(times, t)
		}
		row.Resolve = newStat(times)
		b.logf("7c: %-11s %4d tags (%s %s, tagged in %.1f s): resolve %s", ts.bench.Store, n, ts.bench.Index, fmtBytes(row.IndexBytes), tagSecs, fmtMS(row.Resolve.Median))
		ts.bench.Rows = append(ts.bench.Rows, row)
	}
	return nil
}

func trimID(id string) string { return strings.TrimPrefix(strings.TrimSpace(id), "sha256:") }

// tagName is the i-th tag's name.
func tagName(i int) string { return fmt.Sprintf("t%04d", i) }

// storesImage writes section 1's small image's root filesystem as a tar.
func storesImage(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, _, err := writeRootfs(bw, imageSpec{Label: "2 MB", Ref: "bench/small:1"}); err != nil {
		return err
	}
	return bw.Flush()
}

// importInto runs cmd (a docker or podman import of "-") with
// storesImage on its stdin.
func importInto(cmd *exec.Cmd) error {
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	errc := make(chan error, 1)
	go func() {
		err := storesImage(pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	err := cmd.Run()
	pr.Close()
	if gerr := <-errc; gerr != nil && err == nil {
		err = gerr
	}
	return err
}

// dockerImport imports the section's image into d as ref and returns its ID.
func dockerImport(d *testenv.Dockerd, ref string) (string, error) {
	cmd := d.Command("import", "--change", `CMD ["/sbin/init"]`, "-", ref)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := importInto(cmd); err != nil {
		return "", fmt.Errorf("docker import - %s: %w: %s", ref, err, strings.TrimSpace(stderr.String()))
	}
	id, err := d.Run(nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return strings.TrimSpace(id), err
}

// apiTagger tags through d's API, as section 7a does.
func apiTagger(d *testenv.Dockerd, id string, tagged *int) func(int) error {
	tg := newTagger(d)
	return func(n int) error {
		for ; *tagged < n; *tagged++ {
			if err := tg.tag(id, storesRepo, tagName(*tagged)); err != nil {
				return err
			}
		}
		return nil
	}
}

// classicStore is Debian's dockerd with the btrfs graph driver, measured
// as section 7a measures it.
func (b *bench) classicStore(mnt *vmkit.Mount, work string) (*taggedStore, error) {
	sb := &StoreBench{Store: layout.StoreGraphDriver, Index: "repositories.json",
		How: "`POST /images/{id}/tag` on Debian's dockerd; dockerd left running (it does not lock repositories.json)"}
	d, err := startDockerd(b.cl, filepath.Join(mnt.Dir, dockerPath), filepath.Join(work, "dockerd"))
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	id, err := dockerImport(d, "bench/small:1")
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	tagged := 0
	return &taggedStore{
		bench: sb, tagTo: apiTagger(d, id, &tagged),
		want: storesRepo + ":" + tagName(1), id: id,
		index: filepath.Join(mnt.Dir, dockerPath, "image", "btrfs", "repositories.json"),
		open:  func() snapshot.Store { return graphdriver.New(mnt.Dir, dockerPath) },
	}, nil
}

// podmanStore is Debian's rootful podman with the btrfs driver.
func (b *bench) podmanStore(mnt *vmkit.Mount, work string) (*taggedStore, error) {
	sb := &StoreBench{Store: layout.StorePodman, Index: "btrfs-images/images.json",
		How: "`podman tag IMAGE NAME…` (many names per call) on Debian's podman, rootful, `--storage-driver btrfs`"}
	if _, err := testenv.Output("podman", "--version"); err != nil {
		sb.Skipped = "podman is not installed (apt-get install podman)"
		return &taggedStore{bench: sb}, nil
	}
	root := filepath.Join(mnt.Dir, layout.DefaultPodmanPath)
	p, err := testenv.NewPodmanProcess(root, work)
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	b.cl.push("stop podman", p.Stop)
	const ref = "bench/small:1"
	cmd := p.Command("import", "--change", `CMD ["/sbin/init"]`, "-", ref)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := importInto(cmd); err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: podman import - %s: %w: %s", sb.Store, ref, err, strings.TrimSpace(stderr.String()))
	}
	id, err := p.Run(nil, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	id = strings.TrimSpace(id)
	tagged := 0
	return &taggedStore{
		bench: sb,
		tagTo: func(n int) error {
			// A few hundred names per call keeps argv small.
			for tagged < n {
				args := []string{"tag", id}
				for ; tagged < n && len(args) < 202; tagged++ {
					args = append(args, storesRepo+":"+tagName(tagged))
				}
				if _, err := p.Run(nil, args...); err != nil {
					return err
				}
			}
			return nil
		},
		// Podman shows a short name under localhost/.
		want: "localhost/" + storesRepo + ":" + tagName(1), id: id,
		index: filepath.Join(root, "btrfs-images", "images.json"),
		open:  func() snapshot.Store { return podman.New(mnt.Dir, layout.DefaultPodmanPath) },
	}, nil
}

// containerdStore is Docker 29 with the containerd image store and the
// btrfs snapshotter, built into the cache by `make daemons`. dockerd (and
// its containerd, which holds meta.db's lock) is started to tag and
// stopped before each timing: at boot nothing runs.
func (b *bench) containerdStore(mnt *vmkit.Mount, work string) (*taggedStore, error) {
	sb := &StoreBench{Store: layout.StoreContainerd, Index: "meta.db",
		How: "`POST /images/{id}/tag` on Docker 29 (containerd image store, btrfs snapshotter), stopped before timing"}
	cache, err := vmkit.CacheDir()
	if err != nil {
		sb.Skipped = "no test cache: " + err.Error()
		return &taggedStore{bench: sb}, nil
	}
	bins, err := testenv.Docker29Built(cache)
	if err != nil {
		sb.Skipped = err.Error()
		return &taggedStore{bench: sb}, nil
	}
	if sock, ok := testenv.SystemContainerd(); ok {
		sb.Skipped = fmt.Sprintf("a system containerd listens on %s: dockerd 29 would use it instead of its own", sock)
		return &taggedStore{bench: sb}, nil
	}
	dataRoot := filepath.Join(mnt.Dir, docker29Path)
	var d *testenv.Dockerd
	starts := 0
	start := func() error {
		if d != nil {
			return nil
		}
		starts++
		var err error
		if d, err = testenv.StartDocker29Process(bins, dataRoot, filepath.Join(work, fmt.Sprintf("dockerd-%d", starts))); err != nil {
			return err
		}
		dd := d
		b.cl.push(fmt.Sprintf("stop dockerd 29 (pid %d)", dd.PID), dd.Stop)
		return nil
	}
	stop := func() error {
		if d == nil {
			return nil
		}
		err := d.Stop()
		d = nil
		return err
	}
	if err := start(); err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	const ref = "bench/small:1"
	id, err := dockerImport(d, ref)
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	// docker import leaves the image packed; create unpacks it with the
	// snapshotter, as docker run would.
	cid, err := d.Run(nil, "create", "--network", "none", ref)
	if err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: unpack %s: %w", sb.Store, ref, err)
	}
	if _, err := d.Run(nil, "rm", strings.TrimSpace(cid)); err != nil {
		return &taggedStore{bench: sb}, fmt.Errorf("%s: %w", sb.Store, err)
	}
	root := filepath.Join(docker29Path, layout.DockerContainerdDir)
	tagged := 0
	return &taggedStore{
		bench: sb,
		tagTo: func(n int) error {
			if err := start(); err != nil {
				return err
			}
			return apiTagger(d, id, &tagged)(n)
		},
		offline: stop,
		want:    storesRepo + ":" + tagName(1), id: id,
		index: filepath.Join(mnt.Dir, root, "io.containerd.metadata.v1.bolt", "meta.db"),
		open:  func() snapshot.Store { return containerd.New(mnt.Dir, root, containerd.Options{}) },
	}, nil
}

// bboltCost builds dockroot-init without stripping it and sums its
// symbols' sizes, those of go.etcd.io/bbolt and of snapshot/containerd
// apart; it also builds it as the initramfs holds it.
func bboltCost(work string) (*BinaryCost, error) {
	full := filepath.Join(work, "dockroot-init-symbols")
	if err := vmkit.GoBuild(full, "./cmd/dockroot-init"); err != nil {
		return nil, err
	}
	stripped, err := buildInit(filepath.Join(work, "dockroot-init-stripped"))
	if err != nil {
		return nil, err
	}
	c := &BinaryCost{Arch: runtime.GOARCH}
	if fi, err := os.Stat(stripped); err == nil {
		c.InitBytes = fi.Size()
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := testenv.Output(gobin, "tool", "nm", "-size", full)
	if err != nil {
		return nil, err
	}
	c.SymbolBytes, c.Bbolt, c.BboltSymbols, c.Reader, c.ReaderSymbols = symbolSizes(out)
	if c.BboltSymbols == 0 {
		return c, fmt.Errorf("no go.etcd.io/bbolt symbol in %s: does dockroot-init still link the containerd store?", full)
	}
	return c, nil
}

// symbolSizes sums `go tool nm -size` output ("addr size type name"): all
// symbols, those of go.etcd.io/bbolt, and those of snapshot/containerd.
func symbolSizes(nm string) (all, bbolt int64, nb int, reader int64, nr int) {
	for _, line := range strings.Split(nm, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		name := strings.Join(f[3:], " ")
		all += size
		switch {
		case strings.Contains(name, "go.etcd.io/bbolt"):
			bbolt += size
			nb++
		case strings.Contains(name, "dockroot/snapshot/containerd"):
			reader += size
			nr++
		}
	}
	return all, bbolt, nb, reader, nr
}
