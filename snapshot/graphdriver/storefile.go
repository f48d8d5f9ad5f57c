package graphdriver

import "github.com/dockroot/dockroot/snapshot"

// The most bytes the store reads from each kind of file. A file larger
// than this is not one dockerd wrote; reading it whole at boot could
// exhaust PID 1's memory (a cache-id symlinked to /dev/zero never ends).
const (
	// repositories.json holds one line of ~150 bytes per tag or digest
	// reference: 16 MiB is about 100 000 references.
	maxRepositoriesSize = 16 << 20
	// An image config is a small JSON document (its history grows by a
	// line per Dockerfile step); 4 MiB is the limit registries and
	// containerd put on manifests and configs they fetch.
	maxConfigSize = 4 << 20
	// cache-id holds a 64-hex-digit random ID (moby layer/filestore.go).
	maxCacheIDSize = 256
)

// readFile reads the store file name, relative to the data root, through
// snapshot.ReadStoreFile: a regular file of at most limit bytes, opened
// beneath the data root without following symlinks.
func (s *graphDriverStore) readFile(name string, limit int64) ([]byte, error) {
	return snapshot.ReadStoreFile(s.fsys, name, s.file(name), limit)
}

func storeOpenError(full string, limit int64, err error) error {
	return snapshot.StoreOpenError(full, limit, err)
}
