package initramfs

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// LoadDB reads the module database of the kernel tree dir (relative to the
// root fsys). It uses depmod's files when they exist, as on any installed
// system. Without modules.dep (an unpacked kernel package: depmod runs in
// its postinst) it reads every module's own .modinfo instead, which is the
// data depmod would have used.
func LoadDB(fsys fs.FS, dir string) (*DB, error) {
	db := NewDB()
	if err := readOptional(fsys, path.Join(dir, "modules.builtin"), db.ParseBuiltin); err != nil {
		return nil, err
	}
	if data, err := fs.ReadFile(fsys, path.Join(dir, "modules.builtin.modinfo")); err == nil {
		db.ParseBuiltinModinfo(data)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path.Join(dir, "modules.builtin.modinfo"), err)
	}

	dep := path.Join(dir, "modules.dep")
	if _, err := fs.Stat(fsys, dep); err == nil {
		for _, f := range []struct {
			name  string
			parse func(io.Reader) error
		}{{"modules.dep", db.ParseDep}, {"modules.softdep", db.ParseSoftdep}, {"modules.alias", db.ParseAlias}} {
			if err := readOptional(fsys, path.Join(dir, f.name), f.parse); err != nil {
				return nil, err
			}
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err := scanModinfo(fsys, dir, db); err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("stat %s: %w", dep, err)
	}
	db.finish()
	return db, nil
}

func readOptional(fsys fs.FS, name string, parse func(io.Reader) error) error {
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// scanModinfo adds every module file under dir with its .modinfo strings,
// reading them in parallel (decompressing .ko.xz is the slow part).
func scanModinfo(fsys fs.FS, dir string, db *DB) error {
	var files []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// WalkDir does not follow symlinks, so build/ and source/ (links to
		// kernel headers) are not entered.
		if d.Type().IsRegular() && nameFromPath(p) != "" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list modules in %s: %w", dir, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("no modules.dep and no module files in %s", dir)
	}

	infos := make([][]byte, len(files))
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				infos[i], errs[i] = readModinfo(fsys, files[i])
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()

	for i, p := range files {
		if errs[i] != nil {
			return errs[i]
		}
		rel := strings.TrimPrefix(p, dir+"/")
		db.AddModinfo(rel, infos[i])
	}
	return nil
}

// readModinfo returns the .modinfo section of a module file.
func readModinfo(fsys fs.FS, name string) ([]byte, error) {
	var ra io.ReaderAt
	if plainPath(name) == name {
		f, err := fsys.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open module %s: %w", name, err)
		}
		defer f.Close()
		if r, ok := f.(io.ReaderAt); ok {
			ra = r // read only the ELF headers and the section
		}
	}
	if ra == nil {
		data, err := ReadModule(fsys, name)
		if err != nil {
			return nil, err
		}
		ra = bytes.NewReader(data)
	}
	ef, err := elf.NewFile(ra)
	if err != nil {
		return nil, fmt.Errorf("module %s is not an ELF file: %w", name, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", name)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", name, err)
	}
	return data, nil
}

// ReadModule returns a module file's contents, decompressed: the initramfs
// holds plain .ko files so the boot-time loader needs no decompressor.
func ReadModule(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open module %s: %w", name, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(name, ".ko.xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s (xz): %w", name, err)
		}
		r = xr
	case strings.HasSuffix(name, ".ko.zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("decompress module %s (zstd): %w", name, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(name, ".ko.gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s (gzip): %w", name, err)
		}
		r = gr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", name, err)
	}
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("module %s is not an ELF file after decompression", name)
	}
	return data, nil
}
