package bootmenu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What is swapped in between checkOverwrite's Lstat and its open is caught
// on the open file: a fifo does not block the open, a symlink is not
// followed.
func TestMenuReadRegularRechecks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "fifo", link: "symlink to " + fifo} {
		done := make(chan error, 1)
		go func() {
			_, _, err := readRegular(path, 10)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("readRegular(%s) = %v; want an error saying %q", path, err, want)
			}
		case <-time.After(5 * time.Second):
			if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("readRegular(%s) blocked", path)
		}
	}
}
