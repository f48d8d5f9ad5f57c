package vmkit

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
)

// File is a file, directory or symlink to put into an image or onto a disk.
// Path is relative (no leading slash); a trailing slash makes a directory.
type File struct {
	Path string
	Mode os.FileMode // permission bits; default 0644 (0755 for directories)
	Data string
	Link string // symlink target, if set
}

// WriteFiles creates files under root (on the host: a build context or a
// mounted disk).
func WriteFiles(root string, files []File) error {
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(p, filepath.Clean(root)+string(filepath.Separator)) {
			return fmt.Errorf("file %q escapes %s", f.Path, root)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(f.Path, "/"):
			mode := f.Mode
			if mode == 0 {
				mode = 0o755
			}
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
		case f.Link != "":
			if err := os.Symlink(f.Link, p); err != nil {
				return err
			}
		default:
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(p, []byte(f.Data), mode); err != nil {
				return err
			}
			// WriteFile's mode is filtered by the umask; images need exact bits.
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// TarEntry is one member of a root filesystem's tar stream: a header and,
// for a regular file, its content.
type TarEntry struct {
	Header tar.Header
	Data   []byte
}

// BusyboxRootfs lists a minimal root filesystem: the host's static busybox
// with a symlink per applet, the usual top-level directories, root in
// /etc/passwd and /etc/group, hostname in /etc/hostname, and no
// /sbin/init. The headers carry no times or owner names: the writer of the
// stream sets them. ImportBusybox and the benchmark's generated images
// start from it.
func BusyboxRootfs(hostname string) ([]TarEntry, error) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox root filesystem: %w (apt-get install busybox-static)", err)
	}
	return BusyboxRootfsOf(busybox, hostname)
}

// BusyboxRootfsOf is BusyboxRootfs with the static busybox at bin, which
// may be another architecture's (Debian's busybox-static for arm64). The
// applet list comes from the host's busybox, which runs here: Debian
// builds both from one source package and configuration.
func BusyboxRootfsOf(bin, hostname string) ([]TarEntry, error) {
	host, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox root filesystem: %w (apt-get install busybox-static)", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	list, err := testenv.Output(host, "--list-full")
	if err != nil {
		return nil, fmt.Errorf("busybox root filesystem: %w", err)
	}
	var out []TarEntry
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "etc", "root", "mnt", "var", "var/log"} {
		out = append(out, TarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}})
	}
	out = append(out,
		TarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}},
		regular("bin/busybox", 0o755, data))
	applets := strings.Fields(list)
	sort.Strings(applets)
	for _, a := range applets {
		// No sbin/init: images COPY their own, and COPY onto a symlink
		// writes through it (here: over /bin/busybox).
		if a == "bin/busybox" || a == "sbin/init" || !strings.Contains(a, "/") {
			continue
		}
		out = append(out, TarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: "/bin/busybox", Mode: 0o777}})
	}
	return append(out,
		regular("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		regular("etc/group", 0o644, []byte("root:x:0:\n")),
		regular("etc/hostname", 0o644, []byte(hostname+"\n"))), nil
}

func regular(name string, mode int64, data []byte) TarEntry {
	return TarEntry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, Data: data}
}

// ImportBusybox imports BusyboxRootfs as ref. It is the base image of the
// VM tests and the demo; it needs no registry.
func ImportBusybox(d Engine, ref string) error {
	entries, err := BusyboxRootfs("busybox-image")
	if err != nil {
		return err
	}
	return ImportRootfs(d, ref, "", entries)
}

// ImportRootfs imports entries as the one layer of image ref, for platform
// ("linux/arm64"; "" is the daemon's own), with `docker import`. A File
// list becomes entries with FileEntries.
func ImportRootfs(d Engine, ref, platform string, entries []TarEntry) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		e.Header.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(&e.Header); err != nil {
			return err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	args := []string{"import"}
	if platform != "" {
		args = append(args, "--platform", platform)
	}
	if _, err := d.Run(&buf, append(args, "-", ref)...); err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	return nil
}

// FileEntries turns regular files (no directories or links) into tar
// entries, with their parents' directories left to the entries before.
func FileEntries(files []File) []TarEntry {
	var out []TarEntry
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		out = append(out, regular(f.Path, int64(mode), []byte(f.Data)))
	}
	return out
}

// Engine is what builds the test images: a private dockerd
// (testenv.Dockerd) or Podman on its own graph root (testenv.Podman), whose
// CLIs take the same import and build arguments.
type Engine interface {
	Command(args ...string) *exec.Cmd
	Run(stdin io.Reader, args ...string) (string, error)
}

// Import runs `docker import - ref` (or podman's) with tarball on stdin.
func Import(d Engine, ref string, tarball io.Reader) error {
	if _, err := d.Run(tarball, "import", "-", ref); err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	return nil
}

// Build builds ref with the legacy builder from a context holding files and
// a Dockerfile of the given lines. Only COPY-style steps work: the private
// daemon has no network for RUN.
func Build(d Engine, ref string, dockerfile []string, files []File) error {
	ctx, err := os.MkdirTemp("", "vmkit-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctx)
	files = append(files, File{Path: "Dockerfile", Data: strings.Join(dockerfile, "\n") + "\n"})
	if err := WriteFiles(ctx, files); err != nil {
		return fmt.Errorf("build context for %s: %w", ref, err)
	}
	cmd := d.Command("build", "-q", "-t", ref, ".")
	cmd.Dir = ctx
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %s build -t %s .: %w\n%s", ref, filepath.Base(cmd.Path), ref, err, out)
	}
	return nil
}

// ImportTarballWith imports the root filesystem tarball with files added
// (regular files and symlinks, their missing parent directories made) as
// the one layer of image ref, streaming it into `docker import` (or
// podman's) with changes as its --change instructions. It is how a test
// puts its own units into a debootstrap image where no build can run: a
// Docker 29 whose runc cannot start containers has no RUN, and the tarball
// is too big to hold in memory.
func ImportTarballWith(d Engine, ref, tarball string, files []File, changes ...string) error {
	src, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	defer src.Close()
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := appendTar(pw, src, files)
		pw.CloseWithError(err)
		written <- err
	}()
	args := []string{"import"}
	for _, c := range changes {
		args = append(args, "--change", c)
	}
	_, err = d.Run(pr, append(args, "-", ref)...)
	pr.Close() // unblocks the writer if the import stopped reading
	werr := <-written
	if err != nil {
		return fmt.Errorf("import %s from %s: %w", ref, tarball, err)
	}
	if werr != nil {
		return fmt.Errorf("import %s: add files to %s: %w", ref, tarball, werr)
	}
	return nil
}

// appendTar copies the tar stream src to w, then files after it, each
// with the parent directories src did not hold.
func appendTar(w io.Writer, src io.Reader, files []File) error {
	tr, tw := tar.NewReader(src), tar.NewWriter(w)
	have := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		have[strings.Trim(path.Clean(h.Name), "/")] = true
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	for _, f := range files {
		name := strings.Trim(path.Clean(f.Path), "/")
		var parents []string
		for d := path.Dir(name); d != "." && !have[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			have[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./" + d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				return err
			}
		}
		mode := int64(f.Mode)
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "./" + name, Mode: mode, Size: int64(len(f.Data)), ModTime: time.Unix(0, 0)}
		if f.Link != "" {
			h = &tar.Header{Typeflag: tar.TypeSymlink, Name: "./" + name, Linkname: f.Link, Mode: 0o777, ModTime: time.Unix(0, 0)}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}
