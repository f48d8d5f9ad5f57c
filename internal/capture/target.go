package capture

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/bootrecord"
)

// FileID says where a path lives: its device, inode and mount. Every
// btrfs subvolume has a device number of its own (the subvolume's
// anonymous dev, whichever mount reaches it), so the same Dev as / means
// the same subvolume as /.
type FileID struct {
	Dev, Ino uint64
	// MntID is the mount's ID (statx STATX_MNT_ID, Linux 5.8); 0 when the
	// kernel does not say.
	MntID uint64
}

func statID(path string) (FileID, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO|unix.STATX_MNT_ID, &st); err != nil {
		return FileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	id := FileID{Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Ino: st.Ino}
	if st.Mask&unix.STATX_MNT_ID != 0 {
		id.MntID = st.Mnt_id
	}
	return id, nil
}

// RwLayerError is a top-layer directory on the rw layer that dockroot
// booted as /: the next boot replaces that layer with a fresh snapshot
// of the image, so a top layer written there is gone after it, and the
// boot reads the top layer from toplayer_path= on the top level anyway.
type RwLayerError struct {
	Dir   string // the directory asked for
	Layer string // the booted rw layer, as the boot record names it
	// Device is the root device's node from the boot record ("" when it
	// does not say), whose btrfs top level holds the layers.
	Device string
	// ToplayerPath is toplayer_path= of this boot when the top layer is
	// on the root device, "" otherwise: the directory the boot reads.
	ToplayerPath string
}

func (e *RwLayerError) Error() string {
	return fmt.Sprintf("%s is on the rw layer %s that this system booted as /, which the next boot replaces with a fresh snapshot of the image: a top layer written there is lost", e.Dir, e.Layer)
}

// CheckTarget decides whether a top layer may be written at dir, from
// the boot record rec (nil: dockroot did not boot this system), where
// the running root is (root) and where dir, or its nearest existing
// parent, is (target). It refuses (*RwLayerError) a target on the
// booted rw layer: the same device as / (the same subvolume, through any
// mount of it), or the same mount as / (a subvolume nested in the rw
// layer, which the rotation takes away with it).
func CheckTarget(dir string, rec *bootrecord.Record, root, target FileID) error {
	if rec == nil {
		return nil
	}
	if target.Dev == root.Dev || (target.MntID != 0 && target.MntID == root.MntID) {
		layer := rec.Layer.Subvolume
		if layer == "" {
			layer = "(unnamed)"
		}
		e := &RwLayerError{Dir: filepath.Clean(dir), Layer: layer, Device: rec.RootDevicePath}
		if tl := rec.Toplayer; tl != nil && tl.Device == rec.RootDevice {
			e.ToplayerPath = tl.Path
		}
		return e
	}
	return nil
}
