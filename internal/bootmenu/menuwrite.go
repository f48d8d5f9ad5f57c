package bootmenu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dockroot/dockroot/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Bootloaders the menu is rendered for.
const (
	LoaderGRUB        = "grub"
	LoaderRefind      = "refind"
	LoaderSystemdBoot = "systemd-boot"
)

// Loaders lists the bootloaders, for flag checks and help.
var Loaders = []string{LoaderGRUB, LoaderRefind, LoaderSystemdBoot}

// MenuRecordPrefix starts the name of the file, in the boot directory,
// where `dockroot menu -o` records how it wrote the menu for one
// bootloader (MenuRecordPrefix + loader + ".json"), so that `dockroot
// update` and `dockroot watch` rewrite the same menu the same way. It
// starts with a dot and is a file, so ReadInstalled never takes it for an
// installed tag.
const MenuRecordPrefix = ".dockroot-menu-"

const menuRecordSchema = 1

// Menu is one menu as `dockroot menu` writes it: what to render, for which
// loader, and where to. It is also what MenuRecordPrefix files hold.
type Menu struct {
	Schema     int    `json:"schema"`
	Bootloader string `json:"bootloader"`           // LoaderGRUB, LoaderRefind or LoaderSystemdBoot
	GRUBStyle  string `json:"grub_style,omitempty"` // GRUBScript or GRUBConfig
	BootDir    string `json:"boot_dir"`             // where `dockroot install` put the kernels
	// Out is the file written (systemd-boot: the ESP root); "-" is the
	// writer Generate is given, and is never recorded.
	Out    string `json:"out"`
	Params Params `json:"params"` // LoaderPath resolved
	// Omit leaves these installed references out (an entry about to be
	// removed); never recorded.
	Omit []string `json:"-"`
}

// MenuRecord is the record file of loader's menu in bootDir.
func MenuRecord(bootDir, loader string) string {
	return filepath.Join(bootDir, MenuRecordPrefix+loader+".json")
}

// Generate renders m from the tags installed in m.BootDir and writes it
// to m.Out, replacing only a file dockroot wrote (an edited one is kept as
// .bak first; see the menu verb's documentation). Progress lines, or the
// menu itself for Out "-", go to log. It returns the entries written.
func Generate(ctx context.Context, m Menu, log io.Writer) ([]Entry, error) {
	if !validLoader(m.Bootloader) {
		return nil, fmt.Errorf("bootloader %q: want one of %s", m.Bootloader, strings.Join(Loaders, ", "))
	}
	if m.GRUBStyle == "" {
		m.GRUBStyle = GRUBScript
	}
	installed, err := ReadInstalled(m.BootDir)
	if errors.Is(err, os.ErrNotExist) {
		installed, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	installed = slices.DeleteFunc(installed, func(in Installed) bool { return slices.Contains(m.Omit, in.Ref) })
	if len(installed) == 0 {
		return nil, &NoneInstalledError{BootDir: m.BootDir}
	}
	entries, err := Entries(installed, m.Params)
	if err != nil {
		return nil, err
	}
	// A cancelled run writes nothing rather than half the entries.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stopped before writing: %w", err)
	}
	switch m.Bootloader {
	case LoaderSystemdBoot:
		return entries, writeBLS(log, entries, m.Out)
	case LoaderGRUB:
		var b bytes.Buffer
		if err := RenderGRUB(&b, entries, m.GRUBStyle); err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if m.GRUBStyle == GRUBScript {
			mode = 0o755 // grub-mkconfig runs only executable scripts
		}
		return entries, writeMenu(log, m.Out, b.Bytes(), mode, entries)
	default:
		var b bytes.Buffer
		if err := RenderRefind(&b, entries); err != nil {
			return nil, err
		}
		return entries, writeMenu(log, m.Out, b.Bytes(), 0o644, entries)
	}
}

// NoneInstalledError: the boot directory holds no installed tag.
type NoneInstalledError struct{ BootDir string }

func (e *NoneInstalledError) Error() string {
	return "no kernels installed in " + e.BootDir
}

func validLoader(l string) bool {
	for _, x := range Loaders {
		if l == x {
			return true
		}
	}
	return false
}

// WriteMenuRecord records m in its boot directory (atomically), so that
// ReadMenuRecords finds it. A menu written to standard output is not
// recorded.
func WriteMenuRecord(m Menu) error {
	if m.Out == "-" || m.Out == "" {
		return nil
	}
	m.Schema = menuRecordSchema
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(MenuRecord(m.BootDir, m.Bootloader), append(data, '\n'), 0o644)
}

// ReadMenuRecords returns the menus recorded in bootDir, in Loaders
// order; none is no error.
func ReadMenuRecords(bootDir string) ([]Menu, error) {
	var out []Menu
	for _, l := range Loaders {
		path := MenuRecord(bootDir, l)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var m Menu
		if err := atomicfile.DecodeStrict(data, &m); err != nil {
			return nil, fmt.Errorf("read %s: %w; run dockroot menu ... -o FILE again to rewrite it", path, err)
		}
		if m.Schema != menuRecordSchema || m.Bootloader != l {
			return nil, fmt.Errorf("read %s: schema %d for %q, this dockroot writes schema %d for %q; run dockroot menu ... -o FILE again", path, m.Schema, m.Bootloader, menuRecordSchema, l)
		}
		m.BootDir = bootDir
		out = append(out, m)
	}
	return out, nil
}

func writeMenu(log io.Writer, out string, data []byte, mode os.FileMode, entries []Entry) error {
	if out == "-" {
		_, err := log.Write(data)
		return err
	}
	edited, perm, err := checkOverwrite(out)
	if err != nil {
		return err
	}
	if edited != nil {
		bak := out + ".bak"
		if err := keepBackup(out, bak, edited, perm); err != nil {
			return err
		}
		fmt.Fprintf(log, "kept %s as %s: it was edited after dockroot menu wrote it; move what you added to a file of your own (dockroot menu rewrites %s whole)\n", out, bak, out)
	}
	if err := atomicfile.WriteFile(out, data, mode); err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s: %s\n", out, DescribeEntries(entries))
	return nil
}

// maxMenuSize bounds how much of a file that starts with dockroot's header
// is read to check it: a menu of a thousand entries is under 1 MiB.
const maxMenuSize = 4 << 20

// checkOverwrite decides whether -o may replace out: a missing file, an
// empty regular file, or a menu dockroot wrote and nobody edited may go;
// a menu dockroot wrote that was edited since may go once kept, so its
// content comes back as edited (with its mode); anything else is refused.
// -o /boot/grub/custom.cfg may hold the user's own entries, and -o
// /dev/sda must neither be read whole nor replaced.
func checkOverwrite(out string) (edited []byte, perm os.FileMode, err error) {
	fi, err := os.Lstat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("-o %s: %w", out, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, notRegular(out, fi.Mode())
	}
	data, complete, err := readRegular(out, HeaderLen)
	if err != nil {
		return nil, 0, err
	}
	if complete && len(bytes.TrimSpace(data)) == 0 {
		return nil, 0, nil
	}
	if !HasMenuHeader(data) {
		return nil, 0, fmt.Errorf("-o %s: the file exists and dockroot menu did not write it (it does not start with the header lines dockroot menu writes); "+
			"nothing written, so your entries there are safe: write the menu to a file of its own (e.g. /etc/grub.d/42_dockroot), "+
			"or move the file away first", out)
	}
	data, complete, err = readRegular(out, maxMenuSize)
	if err != nil {
		return nil, 0, err
	}
	if !complete {
		return nil, 0, fmt.Errorf("-o %s: the file starts with dockroot menu's header but holds more than %d MiB, far more than any menu: nothing written; move it away first", out, maxMenuSize>>20)
	}
	if ClassifyMenu(data) == MenuGenerated {
		return nil, 0, nil
	}
	return data, fi.Mode().Perm(), nil
}

// readRegular reads up to limit bytes of the regular file path and says
// whether that was all of it. It opens without following a symlink and
// without blocking (a fifo swapped in after the caller's Lstat would
// otherwise block the open until a writer comes), and checks on the open
// file that it is still a regular file before reading.
func readRegular(path string, limit int) (data []byte, complete bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		if fi, lerr := os.Lstat(path); lerr == nil {
			return nil, false, notRegular(path, fi.Mode())
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, notRegular(path, fi.Mode())
	}
	data, err = io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, false, fmt.Errorf("-o %s: read: %w", path, err)
	}
	if len(data) > limit {
		return data[:limit], false, nil
	}
	return data, true, nil
}

// notRegular refuses -o path of the given type, naming it and, for a
// symlink, where the real file is.
func notRegular(path string, mode os.FileMode) error {
	if mode&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("-o %s is a symlink to %s, which does not resolve (%v): nothing written; -o wants the real path of the file", path, target, err)
		}
		return fmt.Errorf("-o %s is a symlink to %s: nothing written; -o wants the real path, so that the link stays: -o %s", path, target, real)
	}
	return fmt.Errorf("-o %s is a %s, not a regular file: nothing written; give the path of the menu file (e.g. /etc/grub.d/42_dockroot), or -o - for standard output", path, fileType(mode))
}

func fileType(mode os.FileMode) string {
	switch {
	case mode.IsDir():
		return "directory"
	case mode&os.ModeCharDevice != 0:
		return "character device"
	case mode&os.ModeDevice != 0:
		return "block device"
	case mode&os.ModeNamedPipe != 0:
		return "fifo (named pipe)"
	case mode&os.ModeSocket != 0:
		return "socket"
	}
	return fmt.Sprintf("file of type %v", mode.Type())
}

// keepBackup writes edited, the content of out, to bak before out is
// replaced. An existing bak holding something else is an earlier edit
// dockroot kept: it is refused rather than overwritten. bak is never
// executable: grub-mkconfig runs every executable file in /etc/grub.d
// that is not a packaging leftover (grub-mkconfig_lib
// grub_file_is_not_garbage), 42_dockroot.bak included.
func keepBackup(out, bak string, edited []byte, perm os.FileMode) error {
	fi, err := os.Lstat(bak)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("-o %s: keep the edited file as %s: %w", out, bak, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("-o %s: it was edited after dockroot menu wrote it, and %s, where it would be kept, is a %s: nothing written; move %s away, then run again",
			out, bak, fileType(fi.Mode()), bak)
	default:
		old, complete, err := readRegular(bak, len(edited))
		if err != nil {
			return err
		}
		if complete && bytes.Equal(old, edited) {
			return nil
		}
		return fmt.Errorf("-o %s: it was edited after dockroot menu wrote it, and %s already holds an earlier copy that differs: nothing written; "+
			"move what you need from both to a file of your own, remove %s, then run again", out, bak, bak)
	}
	return atomicfile.WriteFile(bak, edited, perm&^0o111)
}

// DescribeEntries is the one-line summary of entries the menu writers print.
func DescribeEntries(entries []Entry) string {
	var names []string
	def := ""
	for _, e := range entries {
		if e.Previous {
			names = append(names, "previous layer")
			continue
		}
		names = append(names, e.Ref)
		if e.Default {
			def = e.Ref
		}
	}
	return fmt.Sprintf("%d entries (%s), default %s", len(entries), strings.Join(names, ", "), def)
}

// writeBLS writes the entries under ESP/loader/entries and removes
// dockroot's entries for tags no longer installed; other files there are
// the user's and stay.
func writeBLS(log io.Writer, entries []Entry, out string) error {
	files, err := RenderBLS(entries)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if out == "-" {
		for _, n := range names {
			if _, err := fmt.Fprintf(log, "# ==> %s <==\n%s", n, files[n]); err != nil {
				return err
			}
		}
		return nil
	}
	if fi, err := os.Stat(out); err != nil || !fi.IsDir() {
		return fmt.Errorf("-o %s: for systemd-boot give the ESP (or XBOOTLDR) root directory, e.g. /efi or /boot/efi: %v", out, errOrNotDir(err))
	}
	dir := filepath.Join(out, filepath.FromSlash(BLSDir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	for _, n := range names {
		if err := atomicfile.WriteFile(filepath.Join(out, filepath.FromSlash(n)), files[n], 0o644); err != nil {
			return err
		}
		fmt.Fprintf(log, "wrote %s\n", filepath.Join(out, filepath.FromSlash(n)))
	}
	stale, err := filepath.Glob(filepath.Join(dir, IDPrefix+"*.conf"))
	if err != nil {
		return err
	}
	for _, s := range stale {
		rel := BLSDir + "/" + filepath.Base(s)
		if _, ours := files[rel]; ours {
			continue
		}
		if err := os.Remove(s); err != nil {
			return fmt.Errorf("remove the entry of a tag no longer installed: %w", err)
		}
		fmt.Fprintf(log, "removed %s (no longer installed)\n", s)
	}
	for _, e := range entries {
		if e.Default {
			fmt.Fprintf(log, "%s; to boot it by default: bootctl set-default %s.conf (or \"default %s.conf\" in %s)\n",
				DescribeEntries(entries), e.ID, e.ID, filepath.Join(out, "loader", "loader.conf"))
		}
	}
	return nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}
