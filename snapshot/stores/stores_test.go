package stores

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/dockroot/dockroot/internal/layout"
)

func TestOpenKinds(t *testing.T) {
	top := t.TempDir()
	var uk *UnknownKindError
	if _, err := Open("podman", top, "var/lib/docker"); !errors.As(err, &uk) || uk.Kind != "podman" {
		t.Errorf("Open(podman) = %v, want an *UnknownKindError for podman", err)
	}
	if _, err := Open(layout.StoreAuto, top, "var/lib/docker"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(auto) on a missing data root = %v, want fs.ErrNotExist", err)
	}
	s, err := Open(layout.StoreGraphDriver, top, "var/lib/docker")
	if err != nil || s.Name() != layout.StoreGraphDriver {
		t.Errorf("Open(graphdriver) = %v, %v", s, err)
	}
}
