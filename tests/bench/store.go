package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// StoreRow is section 2 again on one image, after the store was given
// Extra more layers: the ancestor scanned the whole layerdb at every boot,
// so its cost grows with the layers on the machine (hundreds on a real
// desktop), while dockroot reads only the image's own chain.
type StoreRow struct {
	Extra      int     `json:"extra_layers"`    // layers added, besides the benchmark images'
	LayerdbN   int     `json:"layerdb_entries"` // layerdb directories when measured
	How        string  `json:"how"`             // how the extra layers were made
	ImportSecs float64 `json:"import_secs"`
	Row        HookRow `json:"row"`
}

// storeLayersHow says, in the report, how the extra layers are made.
const storeLayersHow = "`docker import` of as many tiny distinct tarballs (one 40-byte file each; each import is one untagged image of one layer)"

// fillStore adds n layers to the private dockerd's store: one untagged
// `docker import` per layer of a tarball holding one file whose content
// differs, so that no two share a diff ID (layers are keyed by chain ID;
// equal tarballs would make one layer). Untagged, they leave
// repositories.json as it was. Two imports run at a time (2 cores).
func (b *bench) fillStore(n int) error {
	next := make(chan int)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tarball, err := tinyTar(i)
				if err == nil {
					_, err = b.dockerd.Run(bytes.NewReader(tarball), "import", "-")
				}
				if err != nil {
					errs <- fmt.Errorf("extra layer %d of %d: docker import: %w", i+1, n, err)
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break loop
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// tinyTar is a tar stream of one small file whose content names i.
func tinyTar(i int) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := []byte(fmt.Sprintf("dockroot benchmark filler layer %08d\n", i))
	h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("filler/%08d", i), Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(1700000000, 0)}
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layerdbEntries counts the layers in the store's layerdb.
func (b *bench) layerdbEntries() int {
	des, err := os.ReadDir(filepath.Join(b.fs.Dir, dockerPath, "image", "btrfs", "layerdb", "sha256"))
	if err != nil {
		return 0
	}
	return len(des)
}

// benchStore is section 2's second row: the largest image, dockroot
// against ancestor.sh, after adding opts.StoreLayers layers to the store.
// It runs after the other in-store sections, so their figures are taken
// on the store section 1 describes; warm-ups, alternation and the wait for
// btrfs's cleaner are as in benchHook.
func (b *bench) benchStore() error {
	if len(b.images) == 0 {
		return fmt.Errorf("no benchmark image was built")
	}
	img := b.images[len(b.images)-1]
	t0 := time.Now()
	if err := b.fillStore(b.opts.StoreLayers); err != nil {
		return err
	}
	st := &StoreRow{Extra: b.opts.StoreLayers, How: storeLayersHow, ImportSecs: time.Since(t0).Seconds(), LayerdbN: b.layerdbEntries()}
	b.logf("store: %d extra layers in %.1f s; the layerdb holds %d", st.Extra, st.ImportSecs, st.LayerdbN)
	script := filepath.Join(b.work, "ancestor.sh")
	if err := os.WriteFile(script, ancestorScript, 0o755); err != nil {
		return err
	}
	var dr hookRuns
	var sh []float64
	one := func(dockroot, timed bool) error {
		if err := waitCleaner(b.fs.Dir); err != nil {
			return err
		}
		if dockroot {
			t, err := dockrootHook(b.fs.Dir, dockerPath, img.Ref, b.toplayer)
			if err != nil {
				return fmt.Errorf("dockroot hook on %s in the filled store: %w", img.Ref, err)
			}
			if timed {
				dr.add(t)
			}
			return nil
		}
		t, err := ancestorHook(script, b.fs.Dir, dockerPath, img.Ref, b.toplayer)
		if err != nil {
			return err
		}
		if timed {
			sh = append(sh, t)
		}
		return nil
	}
	for w := 0; w < 2; w++ {
		if err := one(true, false); err != nil {
			return err
		}
		if err := one(false, false); err != nil {
			return err
		}
	}
	for i := 0; i < b.opts.HookRuns; i++ {
		first := i%2 == 0
		if err := one(first, true); err != nil {
			return err
		}
		if err := one(!first, true); err != nil {
			return err
		}
	}
	st.Row = dr.row(img, sh)
	b.logf("store %-8s +%d layers: dockroot %s, shell %s: %s faster", img.Label, st.Extra,
		fmtMS(st.Row.Dockroot.Median), fmtMS(st.Row.Shell.Median), fmtRatio(st.Row.Speedup))
	b.res.Store = st
	return nil
}
