package vmkit

import (
	"strings"
	"testing"
	"time"
)

func TestFindFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		text     string
		failures []Failure
		want     string // failure name, "" for none
		line     string
	}{
		{"clean boot", "[    2.2] Run /init as init process\r\ndockroot: resolve image: done in 3 ms\r\nMARKER\r\n", DefaultFailures, "", ""},
		{"kernel panic", "[    2.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n[    2.3] CPU: 0", DefaultFailures, "kernel panic", "[    2.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
		{"go panic", "dockroot: start\r\npanic: runtime error: index out of range [3] with length 3\r\n\r\ngoroutine 1 [running]:\r\n", DefaultFailures, "Go panic", "panic: runtime error: index out of range [3] with length 3"},
		{"panic word mid-line is not a Go panic", "dockroot: recovered from a panic: x\n", DefaultFailures, "", ""},
		{"boot failed", "dockroot: BOOT FAILED: resolve image: no image desk:9\n", DefaultFailures, "dockroot boot failure", "dockroot: BOOT FAILED: resolve image: no image desk:9"},
		{"boot failed allowed", "dockroot: BOOT FAILED: resolve image\n", CrashFailures, "", ""},
		{"panic after allowed failure", "dockroot: BOOT FAILED: x\npanic: boom\n", CrashFailures, "Go panic", "panic: boom"},
		{"last line without newline", "abc\nKernel panic - not syncing", DefaultFailures, "kernel panic", "Kernel panic - not syncing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, line, ok := FindFailure(tc.text, tc.failures)
			if ok != (tc.want != "") || f.Name != tc.want || line != tc.line {
				t.Errorf("FindFailure = %q, %q, %v; want %q, %q", f.Name, line, ok, tc.want, tc.line)
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\r\nb\r\nc\r\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestConsoleWaiters checks the wake-up path Expect relies on: a waiter
// sees text written after it started waiting, and Close wakes it.
func TestConsoleWaiters(t *testing.T) {
	c := NewConsole(nil)
	_, _, changed := c.snapshot()
	go func() { _, _ = c.Write([]byte("hello\n")) }()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("write did not wake the waiter")
	}
	if !strings.Contains(c.String(), "hello") {
		t.Fatalf("console = %q", c.String())
	}
	_, ended, changed := c.snapshot()
	if ended {
		t.Fatal("console ended before Close")
	}
	c.Close()
	<-changed
	if _, ended, _ := c.snapshot(); !ended {
		t.Fatal("Close did not end the console")
	}
}
