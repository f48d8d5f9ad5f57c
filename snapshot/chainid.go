package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ChainID computes the chain ID of the top layer from the diff IDs, bottom
// first, as the OCI image spec defines it: ChainID(L0) = DiffID(L0) and
// ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)). Docker's
// layerdb directories are named by chain ID.
func ChainID(diffIDs []string) (string, error) {
	if len(diffIDs) == 0 {
		return "", ErrNoLayers
	}
	chain := ""
	for i, d := range diffIDs {
		if err := CheckDigest(d); err != nil {
			return "", fmt.Errorf("diff ID %d: %w", i, err)
		}
		if i == 0 {
			chain = d
			continue
		}
		sum := sha256.Sum256([]byte(chain + " " + d))
		chain = "sha256:" + hex.EncodeToString(sum[:])
	}
	return chain, nil
}
