// Command daemons builds, once per machine, the Docker 29 pair the
// containerd-store root tests run (testenv.Docker29: dockerd from moby
// v2.0.0-beta.24 and containerd 2.4.2, with go install, into
// $DOCKROOT_CACHE/daemons), so that the build's minutes are not spent
// inside a test binary's timeout. `make test-root` runs it first.
package main

import (
	"fmt"
	"os"

	"github.com/dockroot/dockroot/internal/testenv"
)

func main() {
	cache := os.Getenv("DOCKROOT_CACHE")
	if cache == "" {
		cache = "/var/cache/dockroot"
	}
	bins, err := testenv.Docker29(cache)
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemons:", err)
		os.Exit(1)
	}
	fmt.Printf("daemons: dockerd %s, containerd in %s (built now: %v)\n", bins.Dockerd, bins.ContainerdDir, bins.Built)
}
