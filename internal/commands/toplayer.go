package commands

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/dockroot/dockroot/internal/capture"
	"github.com/dockroot/dockroot/internal/cli"
	"github.com/dockroot/dockroot/internal/layout"
)

func toplayerVerb() *cli.Verb {
	return &cli.Verb{
		Name:    "toplayer",
		Summary: "toplayer capture: copy this machine's own files (hostname, keys, users, network...) into a top-layer directory",
		Usage:   "toplayer capture --to DIR [--what " + strings.Join(capture.Categories, ",") + "] [--from /] [--dry-run]",
		Doc: `toplayer capture copies the files that make this machine itself out of
its root (--from, default /) into the top-layer directory DIR, which the
boot then lays over every fresh layer (toplayer_path=). --what chooses
among (default: all):

  identity  etc/hostname, etc/machine-id, etc/machine-info; etc/hosts
            only when it names the hostname (else it is the image's own)
  ssh       etc/ssh/ssh_host_* (keys and their .pub, certificates)
  network   etc/NetworkManager/system-connections/*, etc/systemd/network/*
            (symlinks there, masks, kept as symlinks), etc/netplan/*.yaml
  users     the human users, UID_MIN <= uid <= UID_MAX of etc/login.defs
            (default 1000..60000), from etc/passwd and etc/shadow; the
            groups that are their primary group or list them as members,
            member lists cut down to them (the boot joins member lists
            with the image's), likewise in etc/gshadow; their etc/subuid
            and etc/subgid ranges. Every other account is left out and
            said why: system accounts (below UID_MIN), nobody and others
            above UID_MAX. A human-range user with a nologin shell is
            taken. Home directories are not copied: keep them on their
            own subvolume, mounted from the top layer's etc/fstab.
  fstab     etc/fstab, etc/crypttab
  time      etc/adjtime, etc/timezone, etc/localtime (kept as a symlink)

Owners, modes and times are kept. Every file is printed with what
happened to it: new, replaced (it differed), unchanged (not written),
left out (and why) or absent. The account files in DIR are regenerated
whole from the machine's each time. --dry-run prints the same and
writes nothing.

Nothing in the source root is followed out of it: a file that is a
symlink is left out (but etc/localtime and network masks), and DIR is
written by file descriptor, never through a symlink already in it.
On a system dockroot booted (the boot record exists), DIR must not be on
the rw layer mounted as /: the next boot replaces that layer. Give a
directory on the btrfs top level mounted elsewhere, or on another disk.`,
		Examples: []cli.Example{
			{Command: "toplayer capture --to /mnt/top/boot_docker --dry-run", Doc: "what would be taken, with the btrfs top level mounted at /mnt/top (mount -o subvolid=5 LABEL=linux /mnt/top)"},
			{Command: "toplayer capture --to /mnt/top/boot_docker", Doc: "take everything"},
			{Command: "toplayer capture --to /media/keys/dockroot --what identity,ssh", Doc: "only the hostname, machine-id and SSH host keys, onto another disk"},
			{Command: "toplayer capture --from /mnt/oldroot --to /mnt/top/boot_docker --what users", Doc: "the users of a root mounted elsewhere"},
		},
		Setup: setupToplayer,
	}
}

func setupToplayer(fs *flag.FlagSet) func(*Context, []string) error {
	var (
		to, from, what, bootJSON string
		dryRun                   bool
	)
	fs.StringVar(&to, "to", "", "the top-layer `DIR` to write into (made if missing)")
	fs.StringVar(&from, "from", "/", "the machine's root `DIR` to copy from")
	fs.StringVar(&what, "what", "all", "comma-separated `LIST` of what to take: "+strings.Join(capture.Categories, ", "))
	fs.BoolVar(&dryRun, "dry-run", false, "print what would be taken and left out, write nothing")
	fs.StringVar(&bootJSON, "boot-json", layout.BootRecord, "the boot record `FILE`; when it exists, DIR must not be on the booted rw layer")
	return func(ctx *Context, args []string) error {
		switch {
		case len(args) == 0:
			return cli.Usagef("toplayer needs a subcommand: capture")
		case args[0] != "capture":
			return cli.Usagef("unknown subcommand %q: the one there is is capture", args[0])
		case len(args) > 1:
			return cli.Usagef("unexpected argument %q", args[1])
		case to == "":
			return cli.Usagef("--to DIR is required")
		}
		cats, err := capture.ParseWhat(what)
		if err != nil {
			return cli.Usagef("--what: %v", err)
		}
		rep, err := capture.Capture(capture.Options{From: from, To: to, What: cats, DryRun: dryRun, BootRecord: bootJSON, HostRoot: "/"})
		if rep != nil {
			printCapture(ctx.Stdout, rep)
		}
		var rw *capture.RwLayerError
		var te *capture.TargetError
		switch {
		case errors.As(err, &rw):
			dev, dir := "DEVICE", "/mnt/top/PATH with toplayer_path=PATH"
			if rw.Device != "" {
				dev = rw.Device
			}
			if rw.ToplayerPath != "" {
				dir = "/mnt/top/" + strings.TrimPrefix(rw.ToplayerPath, "/") + ", this boot's toplayer_path="
			}
			return fmt.Errorf("%w; give --to a directory on the btrfs top level mounted elsewhere (mount -o subvolid=5 %s /mnt/top; --to %s) or on another disk", err, dev, dir)
		case errors.As(err, &te):
			return fmt.Errorf("%w in the top layer --to %s", err, to)
		}
		return err
	}
}

// printCapture prints the report: one line per file and per account,
// then the totals.
func printCapture(w io.Writer, rep *capture.Report) {
	fmt.Fprintf(w, "capture %s from %s into %s\n", strings.Join(rep.What, ", "), rep.From, rep.To)
	var table [][]string
	users, groups := false, false // their accounts' rows are printed
	for _, f := range rep.Files {
		detail := f.Path
		switch f.Action {
		case capture.LeftOut, capture.Absent:
			detail += ": " + f.Why
		default:
			detail += fmt.Sprintf(" (%d:%d %s", f.UID, f.GID, modeString(f))
			if f.Link != "" {
				detail += " -> " + f.Link
			}
			detail += ")"
			if f.Why != "" {
				detail += ": " + f.Why
			}
		}
		table = append(table, []string{f.Category, string(f.Action), detail})
		switch f.Path {
		case "etc/passwd":
			table = append(table, accountRows(rep, "user")...)
			users = true
		case "etc/group":
			table = append(table, accountRows(rep, "group")...)
			groups = true
		}
	}
	if !users {
		table = append(table, accountRows(rep, "user")...)
	}
	if !groups {
		table = append(table, accountRows(rep, "group")...)
	}
	writeTable(w, table)
	n, replaced := rep.Written()
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: nothing written (would write %d files, %d of them replaced)\n", n, replaced)
		return
	}
	fmt.Fprintf(w, "wrote %d files into %s (%d new, %d replaced)\n", n, rep.To, n-replaced, replaced)
}

// accountRows lists each account of kind ("user", "group") the capture
// took or left out.
func accountRows(rep *capture.Report, kind string) [][]string {
	var rows [][]string
	for _, a := range rep.Accounts {
		if a.Kind != kind {
			continue
		}
		idName := "uid"
		if a.Kind == "group" {
			idName = "gid"
		}
		action, detail := "took", fmt.Sprintf("%s %s (%s %d)", a.Kind, a.Name, idName, a.ID)
		switch {
		case a.Bad && a.Name == "":
			detail = a.Kind + " (no name)"
		case a.Bad:
			detail = a.Kind + " " + a.Name
		}
		if !a.Taken {
			action = string(capture.LeftOut)
		}
		if a.Why != "" {
			detail += ": " + a.Why
		}
		rows = append(rows, []string{"users", action, detail})
	}
	if kind == "group" && rep.SystemGroups > 0 {
		rows = append(rows, []string{"users", string(capture.LeftOut), fmt.Sprintf("%d system groups (gid outside %d..%d) with no captured member",
			rep.SystemGroups, rep.Ranges.GIDMin, rep.Ranges.GIDMax)})
	}
	return rows
}

func modeString(f capture.File) string {
	if f.Link != "" {
		return "symlink"
	}
	return fmt.Sprintf("%04o", f.Mode)
}
