package snapshot

import (
	"errors"
	"strings"
	"testing"
)

func TestChainIDErrors(t *testing.T) {
	if _, err := ChainID(nil); !errors.Is(err, ErrNoLayers) {
		t.Errorf("ChainID(nil) = %v, want ErrNoLayers", err)
	}
	if _, err := ChainID([]string{"sha256:" + hex64, "sha256:12"}); err == nil || !strings.Contains(err.Error(), "diff ID 1") {
		t.Errorf("ChainID with a bad second diff ID = %v, want error naming diff ID 1", err)
	}
	// The first layer's chain ID is its diff ID (OCI image spec).
	if got, err := ChainID([]string{"sha256:" + hex64}); err != nil || got != "sha256:"+hex64 {
		t.Errorf("ChainID(one layer) = %q, %v; want the diff ID", got, err)
	}
}

func TestNotFoundErrorMessage(t *testing.T) {
	e := &NotFoundError{Ref: "desk:3", Store: "the store", Available: []string{"desk:1", "desk:2"}}
	if !errors.Is(e, ErrNotFound) {
		t.Error("errors.Is(*NotFoundError, ErrNotFound) = false")
	}
	if strings.Contains(e.Error(), "docker_image=") {
		t.Errorf("%q gives boot advice: the boot adds it, not the store", e.Error())
	}
	for _, w := range []string{`"desk:3"`, "desk:1, desk:2"} {
		if !strings.Contains(e.Error(), w) {
			t.Errorf("%q lacks %q", e.Error(), w)
		}
	}
}
