package rwlayer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockroot/dockroot/internal/layout"
	"golang.org/x/sys/unix"
)

// What no layer may be in, recognised by identity rather than by spelling.
//
// checkLayerName compares names, which is enough only while every path is
// spelled the one way: a Docker data root reached through a symlink
// (docker_path=dr, dr -> data/docker) or spelled "." is the same directory
// under another name. Here the data root and the state directory are
// identified by device and inode (on btrfs every subvolume has its own
// st_dev, so the pair identifies a directory across subvolumes), and
// NAME's directory chain is walked from the top level without following
// symlinks and compared with them.

// fileID identifies a directory on the mounted filesystem.
type fileID struct{ dev, ino uint64 }

func statID(path string, follow bool) (fileID, bool, error) {
	var st unix.Stat_t
	var err error
	if follow {
		err = unix.Stat(path, &st)
	} else {
		err = unix.Lstat(path, &st)
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return fileID{}, false, nil
	}
	if err != nil {
		return fileID{}, false, layerOpError("inspect", path, err)
	}
	return fileID{uint64(st.Dev), st.Ino}, true, nil
}

// guard is what the paths of one Layers operation must stay out of.
type guard struct {
	top       fileID
	dataRoot  *fileID         // the Docker data root as Docker reaches it; nil if it does not exist
	aboveData map[fileID]bool // every directory between the top level and the data root, resolved
	stateDir  *fileID         // Top/.dockroot; nil if it does not exist yet
}

func (c *layerCtx) loadGuard() (*guard, error) {
	g := &guard{aboveData: map[fileID]bool{}}
	id, _, err := statID(c.top, true)
	if err != nil {
		return nil, err
	}
	g.top = id
	dr := filepath.Join(c.top, c.dockerPath)
	if id, ok, err := statID(dr, true); err != nil {
		return nil, err
	} else if ok {
		g.dataRoot = &id
		realTop, err1 := filepath.EvalSymlinks(c.top)
		realDR, err2 := filepath.EvalSymlinks(dr)
		if err := errors.Join(err1, err2); err != nil {
			return nil, layerOpError("resolve the Docker data root", dr, err)
		}
		for p := filepath.Dir(realDR); strings.HasPrefix(p, realTop+"/"); p = filepath.Dir(p) {
			id, ok, err := statID(p, false)
			if err != nil {
				return nil, err
			}
			if ok {
				g.aboveData[id] = true
			}
		}
	}
	if id, ok, err := statID(filepath.Join(c.top, layout.StateDir), false); err != nil {
		return nil, err
	} else if ok {
		g.stateDir = &id
	}
	return g, nil
}

// checkChain walks rel (relative to Top) one element at a time with lstat
// and says why a layer there would be in (or would hold) the Docker data
// root or the state directory, or would be reached through a symlink.
// Elements that do not exist yet end the walk: nothing below them can be
// anything. symlink is the first symbolic link met above rel's last
// element.
func (g *guard) checkChain(top, rel string) (reason, symlink string, err error) {
	if g.dataRoot != nil && *g.dataRoot == g.top {
		return "is inside the Docker data root, which is the top level itself", "", nil
	}
	elems := strings.Split(rel, "/")
	p := top
	for i, e := range elems {
		p = filepath.Join(p, e)
		fi, lerr := os.Lstat(p)
		if errors.Is(lerr, os.ErrNotExist) || errors.Is(lerr, unix.ENOTDIR) {
			return "", "", nil
		}
		if lerr != nil {
			return "", "", layerOpError("inspect", p, lerr)
		}
		last := i == len(elems)-1
		if fi.Mode()&os.ModeSymlink != 0 {
			if last {
				return "", "", nil // NAME itself: the scan reports it as "a symlink"
			}
			target, _ := os.Readlink(p)
			return fmt.Sprintf("is reached through the symbolic link %s (-> %s): its layers' renames would follow the link and their deletion refuses it", p, target), p, nil
		}
		id, ok, err := statID(p, false)
		if err != nil || !ok {
			return "", "", err
		}
		switch {
		case g.dataRoot != nil && id == *g.dataRoot:
			return fmt.Sprintf("is inside the Docker data root (%s is the same directory)", p), "", nil
		case g.stateDir != nil && id == *g.stateDir:
			return fmt.Sprintf("is inside dockroot's state directory (%s is the same directory)", p), "", nil
		case last && g.aboveData[id]:
			return "contains the Docker data root: rotating it would move Docker's images", "", nil
		}
	}
	return "", "", nil
}
