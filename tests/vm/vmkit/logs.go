package vmkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

var (
	logsMu sync.Mutex
	logs   = map[string]int{} // boots per log name in this process
)

// NextLogFile names the console log of a test's next boot in dir (created
// if needed): <test>.log for the first, <test>.2.log for the second, and
// so on, with the '/' of subtest names made '_'.
func NextLogFile(dir, test string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return "", fmt.Errorf("console log directory %s: %w", dir, err)
	}
	name := strings.ReplaceAll(test, "/", "_")
	logsMu.Lock()
	logs[filepath.Join(dir, name)]++
	if n := logs[filepath.Join(dir, name)]; n > 1 {
		name += "." + strconv.Itoa(n)
	}
	logsMu.Unlock()
	return filepath.Join(dir, name+".log"), nil
}
