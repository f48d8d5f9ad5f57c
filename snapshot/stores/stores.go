// Package stores opens the image store a Docker data root holds: it knows
// every kind (snapshot/graphdriver today) and picks one for
// dockroot.store=auto. The boot and the host tool call Open; the stores
// themselves never import this package.
//
// It must not import the boot (hook), the host tool's packages or any
// daemon client: the init links it.
package stores

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dockroot/dockroot/internal/layout"
	"github.com/dockroot/dockroot/snapshot"
	"github.com/dockroot/dockroot/snapshot/graphdriver"
)

// UnknownKindError is a store kind that no store has.
type UnknownKindError struct{ Kind string }

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("unknown image store kind %q (known: %v)", e.Kind, layout.StoreKinds)
}

// Open opens the image store of the Docker data root dockerPath (relative
// to top, where the btrfs top level is mounted). layout.StoreAuto (or "")
// picks the store the data root holds and says what is wrong when it holds
// none that dockroot can read.
func Open(kind, top, dockerPath string) (snapshot.Store, error) {
	switch kind {
	case layout.StoreGraphDriver:
		return graphdriver.New(top, dockerPath), nil
	case layout.StoreAuto, "":
		root := filepath.Join(top, dockerPath)
		if err := graphdriver.Detect(os.DirFS(root), root); err != nil {
			return nil, err
		}
		return graphdriver.New(top, dockerPath), nil
	default:
		return nil, &UnknownKindError{Kind: kind}
	}
}
