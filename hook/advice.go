package hook

import (
	"errors"
	"fmt"

	"github.com/dockroot/dockroot/internal/freespace"
	"golang.org/x/sys/unix"
)

// advise adds what to do next to a failed step's error. It is the one place
// the boot turns the libraries' errors into advice for the machine's owner
// (kernel parameters, commands to run): the libraries name the thing and
// the cause, and say nothing of the boot loader or the command line.
func advise(err error) error {
	return explainNoSpace(err)
}

// explainNoSpace adds what to do to an error caused by a full filesystem
// (ENOSPC) in any step; the free-space check's own error already says it.
func explainNoSpace(err error) error {
	if !errors.Is(err, unix.ENOSPC) || errors.Is(err, freespace.ErrLowSpace) {
		return err
	}
	return fmt.Errorf("%w\nthe filesystem is full: what this boot created was removed and nothing else was changed. "+
		"Free space, then boot again: remove images you no longer need (docker image prune), old rw layers (dockroot gc, "+
		"or lower dockroot.keep=), and if `btrfs filesystem df` shows metadata full, run `btrfs balance start -dusage=50`", err)
}
