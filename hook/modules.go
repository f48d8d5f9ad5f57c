package hook

import (
	"fmt"
	"os"
	"strings"

	"github.com/dockroot/dockroot/internal/kmod"
)

// loadModuleList loads the initramfs's module list and summarises the
// outcome for the step's "done" line. Per-module lines are debug output:
// a dozen of them would use up the kernel's /dev/kmsg rate limit before
// the steps that matter. Failures come back in the error.
func loadModuleList(log Logger, list string) (string, error) {
	if _, err := os.Stat(list); err != nil {
		return "", err // os.ErrNotExist: the step is skipped
	}
	res, err := kmod.NewLoader(log.Debugf).LoadList(list)
	return moduleSummary(res), err
}

// moduleSummary renders "5 loaded, 2 already loaded, ..." in a fixed order.
func moduleSummary(res kmod.Result) string {
	var parts []string
	for _, o := range []kmod.Outcome{kmod.Loaded, kmod.Present, kmod.BuiltIn, kmod.NoDevice, kmod.Failed} {
		if n := len(res[o]); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(parts) == 0 {
		return "the list is empty"
	}
	return strings.Join(parts, ", ")
}
