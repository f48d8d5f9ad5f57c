// Package toplayer lays a machine's own files (the "top layer") over the
// fresh read-write snapshot of a Docker image, before that snapshot becomes
// the root filesystem. dockroot-init calls Apply in the "apply the top layer"
// boot step; package securejoin serves any caller that must name
// a path inside a root it does not trust.
//
// The new root is someone else's filesystem: the image may contain
// `etc -> /somewhere`, `etc/passwd -> /outside` or `etc -> ../../..`. Apply
// therefore never resolves a path string inside the new root. It walks the
// destination one component at a time from a directory file descriptor with
// openat(O_NOFOLLOW|O_DIRECTORY) and the other *at syscalls, so no symlink in
// the destination is ever followed and every write lands inside the root.
// The top layer is read the same way, so an entry whose full path is
// longer than PATH_MAX (4096 bytes), which no path string can name, is
// copied like any other.
// (openat2 RESOLVE_NO_SYMLINKS would give the same guarantee but needs Linux
// 5.6; a single-component openat with O_NOFOLLOW gives it on every kernel, so
// there is one code path to test.)
//
// Semantics, following Docker's layer rules where they exist:
//
//   - Every entry of the top layer replaces the destination entry of the same
//     name: content, owner, full mode (setuid, setgid, sticky), atime and
//     mtime, xattrs of every namespace the caller can read (user., trusted.,
//     security. including security.capability, system.posix_acl_*).
//   - The top layer wins on type changes: a file over a directory removes the
//     directory tree (without following symlinks); a directory over a
//     symlink that names no directory in the new root (dangling, a file, a
//     loop, a path that exists only outside the root) replaces the symlink
//     with a real directory. Apply logs each such replacement.
//   - A directory over a symlink that names a directory merges into that
//     directory, so that a top layer's `lib/firmware/x` over a merged-/usr
//     image's `lib -> usr/lib` lands in usr/lib/firmware and keeps
//     /lib/x86_64-linux-gnu (a Docker layer would replace the symlink and
//     leave the machine without its libraries). The symlink is resolved as
//     the kernel would after chroot into the new root, like
//     securejoin.Resolve: an absolute target restarts at the new root and
//     ".." never climbs above it, so `lib -> /../../etc` means the new
//     root's etc. The walk is made from directory descriptors all the same.
//     The symlink stays; the directory it names keeps its own owner, mode,
//     xattrs and times (it is the image's); Apply logs each such merge. A
//     top-layer directory with an opaque marker is not merged: it replaces
//     the symlink, as in a Docker layer, rather than empty the target.
//   - Two directories merge; the top layer's directory metadata wins, and
//     xattrs the image had on that directory are left in place.
//   - Nothing is ever written through what the image has under a name.
//     Every file, symlink and node is a new inode, created with O_EXCL (or
//     symlinkat/mknodat/linkat, which never follow); if the name is taken,
//     the image's entry is unlinked first, so a destination symlink is
//     removed, not followed, and a destination hard-linked elsewhere in the
//     image keeps its other names and its content. Data is reflinked
//     (FICLONE) when source and destination share a btrfs filesystem, else
//     copied over the data segments only (holes stay holes), in the kernel
//     where it can (copy_file_range within a filesystem, sendfile across
//     filesystems), with read and write for small files. Owner, mode and
//     times are set on the open file, and chown and chmod only when the new
//     inode differs from the source: most files need neither.
//   - Files are written in place, not under a temporary name and renamed:
//     Apply writes into a layer that is not live yet (the pending layer of
//     rwlayer.Layers.Prepare), which a crash leaves to be discarded by the
//     next boot and which Commit syncs to disk before it goes live. On an
//     error Apply removes the file it was writing, so no name is left
//     holding half a file; the caller discards the layer (Pending.Abort).
//   - Hard links inside the top layer stay hard links to each other.
//   - Fifos and device nodes are recreated with mknod; sockets are skipped
//     and listed in Summary.Skipped.
//   - Whiteouts: `.wh.NAME` deletes NAME (recursively, never through a
//     symlink) and is not copied; `.wh..wh..opq` empties the destination
//     directory before the top layer's entries are copied into it. Other
//     `.wh..wh.*` names are aufs metadata and are skipped, as Docker does.
//     Whiteouts apply to the image only, never to the top layer's own entries.
//   - Account databases are merged, not replaced: the top layer's
//     etc/passwd, etc/group, etc/shadow, etc/gshadow, etc/subuid and
//     etc/subgid (regular files directly in its etc/) are merged into the
//     image's files of the same name, so that a system user a new image
//     adds (a new daemon's account) is kept. The result holds the
//     image's lines in the image's order, comments, blank lines and lines
//     that do not parse included, verbatim; a line whose name (first
//     field) the top layer also has becomes the top layer's line, in
//     place; the top layer's other names follow in its order. Member
//     lists are joined, not replaced: group's members, gshadow's admins
//     and members are the image's followed by the top layer's not already
//     in them (so the top layer cannot take a member out of an image's
//     group: replace the file for that). subuid and subgid are keyed by
//     name too; the top layer's ranges of a name replace the image's.
//     The top layer's own comments and blank lines are dropped. A top-layer
//     line that does not parse (wrong field count, empty name or a name
//     with white space, a uid, gid or range that is not a number, a
//     carriage return) or a name on two of its lines is an error naming
//     the file and line, never silently dropped: it may be someone's
//     account. The merged file is the image's own: owner, mode and
//     xattrs; shadow and gshadow lose any o+rwx bits. It is created like
//     any other file (a new inode, the image's name unlinked first, never
//     written through, removed again on failure). Summary.Warnings says
//     when a top-layer line gives a name a uid or gid that another image
//     name has, or one other than the image gives that name (the image's
//     files owned by the old id change hands), and when a shadow file's
//     mode was narrowed. When the image has no regular file under the
//     name (none, a symlink, a directory), the top layer's file is copied
//     as any other, after the same checks, with a warning unless there
//     was none at all.
//   - A marker etc/NAME.dockroot-replace in the top layer (any file
//     type, any content) copies its etc/NAME as it is instead, as Apply
//     did before merging existed. Markers are never copied into the new
//     root; one for a name that is not merged or absent from the top
//     layer is a warning. Only the top layer's own etc/ has markers
//     and account databases; srv/etc/passwd is an ordinary file.
//   - The new root's own directory keeps the image's owner, mode and xattrs:
//     the top layer's root directory is only a container (often a mount point
//     or a directory made by an installer), and a stray 0700 on it would make
//     the whole machine unusable. An opaque marker at the top layer's root is
//     refused for the same reason.
//
// It imports nothing of dockroot's (it does its own fd-relative walk), so
// both binaries may link it.
package toplayer

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Summary counts what Apply did, for the boot log.
type Summary struct {
	Files     int // regular files written (not counting extra hard links)
	Dirs      int // directories created or merged
	Symlinks  int
	Specials  int // fifos and device nodes
	HardLinks int // extra names linked to a file already written
	Whiteouts int // .wh.NAME and .wh..wh..opq entries applied
	Bytes     int64
	// Copied is how many of Bytes were written as file data (copied),
	// not shared with the source by reflink. 0 means the top layer added
	// only btrfs metadata to the new root (rwlayer.Pending.MetadataOnly).
	Copied   int64
	Duration time.Duration
	Skipped  []string // top-layer paths not copied (sockets), with the reason
	// Warnings are what the boot should tell the operator about the
	// account databases (see the package documentation): an id given to
	// two names, a uid or gid that changed, a shadow file others could
	// read, a replace marker that names nothing. One line each, naming
	// the file. They are not passed to Options.Log: the caller reports
	// them.
	Warnings []string
}

func (s Summary) String() string {
	return fmt.Sprintf("%d files (%d bytes, %d copied, the rest reflinked), %d dirs, %d symlinks, %d hard links, %d special, %d whiteouts, %d skipped in %s",
		s.Files, s.Bytes, s.Copied, s.Dirs, s.Symlinks, s.HardLinks, s.Specials, s.Whiteouts, len(s.Skipped), s.Duration.Round(time.Millisecond)) +
		warningCount(len(s.Warnings))
}

func warningCount(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return ", 1 warning"
	}
	return fmt.Sprintf(", %d warnings", n)
}

// Options tunes ApplyWith. The zero value is what Apply uses.
type Options struct {
	// Log receives one line per notable event: a symlink or directory
	// replaced by a different type, a skipped socket or aufs entry.
	// Paths in it are shortened like those in Error messages.
	Log func(format string, args ...any)
}

// Error is the error Apply returns: the operation, the top-layer source path
// and the destination path inside the new root. Src and Dst are always the
// full paths; the message shortens each part (see Error), since a top layer
// can nest deeper than PATH_MAX and a boot log record must stay short.
type Error struct {
	Op  string // "copy", "mkdir", "chown", "whiteout", ...
	Src string // path in the top layer, "" when not applicable
	Dst string // path under the new root
	Err error
}

// Longest op, path and cause in an Error message; with the longest hint
// the message stays under 1 KB, the size of one /dev/kmsg record.
const (
	msgOpMax    = 64
	msgPathMax  = 240
	msgCauseMax = 320
)

// Error says "toplayer: OP SRC -> DST: CAUSE (HINT)", each of OP, SRC, DST
// and CAUSE shortened in the middle with an ellipsis when it is long, so
// that both the start of a path (which top layer, which root) and its end
// (which entry) and the errno at the end of the cause stay in view.
func (e *Error) Error() string {
	msg := "toplayer: " + ellipsize(e.Op, msgOpMax)
	if e.Src != "" {
		msg += " " + ellipsize(e.Src, msgPathMax) + " ->"
	}
	msg += " " + ellipsize(e.Dst, msgPathMax) + ": " + ellipsize(e.Err.Error(), msgCauseMax)
	if hint := hintFor(e.Err); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg
}

// ellipsize returns s if it has at most max bytes, else its start and its
// end joined by "…", max bytes in all, cut on UTF-8 character boundaries.
func ellipsize(s string, max int) string {
	const ellipsis = "…"
	if len(s) <= max {
		return s
	}
	keep := max - len(ellipsis)
	head, tail := keep/2, len(s)-(keep-keep/2)
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + ellipsis + s[tail:]
}

func (e *Error) Unwrap() error { return e.Err }

// hintFor says what to do next for the failures an operator can fix.
func hintFor(err error) string {
	var le *LineError
	switch {
	case errors.As(err, &le):
		return fmt.Sprintf("fix or remove that line in the top layer, or add %s%s to copy the file as it is, unmerged", le.File, replaceSuffix)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return "the top layer must be applied as root, and the destination must not be immutable"
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return "the filesystem holding the new root is full; free space or shrink the top layer"
	case errors.Is(err, unix.EROFS):
		return "the new root is read-only; it must be a writable snapshot"
	case errors.Is(err, unix.ENOTSUP):
		return "the destination filesystem does not support this; use btrfs for the rw layer"
	}
	return ""
}

// Apply copies the tree under src over newRoot with the rules in the package
// documentation and returns what it did. On error the new root may hold part
// of the top layer, with image entries it replaced already removed, but never
// a half-written file and never a write outside newRoot: discard it. newRoot
// should be a layer that is not live yet (see the package documentation);
// Apply does not sync.
func Apply(newRoot, src string) (Summary, error) {
	return ApplyWith(newRoot, src, Options{})
}
