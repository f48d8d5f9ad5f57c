package uevent

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dockroot/dockroot/internal/testenv"
)

// TestListenReceivesKernelEvent asks the kernel to resend /dev/null's
// uevent (writing "change" to its sysfs uevent file) and reads it from a
// real socket.
func TestListenReceivesKernelEvent(t *testing.T) {
	testenv.RequireRoot(t)
	c, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	const trigger = "/sys/devices/virtual/mem/null/uevent"
	if err := os.WriteFile(trigger, []byte("change"), 0o200); err != nil {
		c.Close()
		t.Skipf("cannot trigger a uevent here (%v)", err)
	}
	got := make(chan Event, 1)
	go func() {
		for {
			ev, err := c.Read()
			if err != nil {
				close(got)
				return
			}
			if strings.HasSuffix(ev.DevPath, "/mem/null") {
				got <- ev
			}
		}
	}()
	select {
	case ev, ok := <-got:
		if !ok || ev.Action != "change" || ev.Subsystem != "mem" || ev.DevName != "null" {
			t.Errorf("event = %+v (ok %v), want change of mem/null", ev, ok)
		}
	case <-time.After(5 * time.Second):
		t.Skip("no uevent within 5 s: this network namespace does not receive the kernel's uevents")
	}
	start := time.Now()
	c.Close()
	// Read returns ErrClosed within its poll interval; the goroutine ends.
	for range got {
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Read returned %s after Close", took)
	}
}
