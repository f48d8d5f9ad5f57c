package vmkit

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
)

// A Failure is a console line that ends a boot as failed however long the
// test would have waited for its marker.
type Failure struct {
	Name    string
	Pattern *regexp.Regexp
}

var (
	// KernelPanic is the kernel's own "Kernel panic - not syncing" line
	// (panic() in kernel/panic.c); with panic=-1 QEMU then exits.
	KernelPanic = Failure{"kernel panic", regexp.MustCompile(`Kernel panic`)}
	// GoPanic is the Go runtime's unrecovered-panic header, which it prints
	// at the start of a line before the goroutine dump.
	GoPanic = Failure{"Go panic", regexp.MustCompile(`(?m)^panic: `)}
	// BootFailed is dockroot-init's last words before it applies
	// dockroot.onfail=.
	BootFailed = Failure{"dockroot boot failure", regexp.MustCompile(`dockroot: BOOT FAILED`)}
)

// DefaultFailures fail a boot that is meant to succeed.
var DefaultFailures = []Failure{KernelPanic, GoPanic, BootFailed}

// CrashFailures fail a boot that is meant to fail cleanly: dockroot may
// report BOOT FAILED, but nothing may panic.
var CrashFailures = []Failure{KernelPanic, GoPanic}

// Console collects a serial console: it keeps everything written to it,
// copies it to Live (if set), and lets readers wait for text to appear.
// It is safe for one writer and many waiters.
type Console struct {
	Live io.Writer

	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
	closed  bool
}

// NewConsole returns an empty console copying to live (may be nil).
func NewConsole(live io.Writer) *Console {
	return &Console{Live: live, changed: make(chan struct{})}
}

// Write appends p; it never fails, so a slow or broken Live writer cannot
// stall QEMU's output.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf.Write(p)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.Live != nil {
		_, _ = c.Live.Write(p)
	}
	return len(p), nil
}

// Close marks the end of output (QEMU exited) and wakes waiters.
func (c *Console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// String is everything seen so far.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// snapshot returns the text so far, whether output has ended, and a channel
// closed on the next change.
func (c *Console) snapshot() (string, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.closed, c.changed
}

// Tail returns the last n lines of s, with carriage returns removed (the
// serial console ends lines with \r\n).
func Tail(s string, n int) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FindFailure returns the first failure whose pattern matches text, and the
// matching line.
func FindFailure(text string, failures []Failure) (Failure, string, bool) {
	for _, f := range failures {
		loc := f.Pattern.FindStringIndex(text)
		if loc == nil {
			continue
		}
		start := strings.LastIndexByte(text[:loc[0]], '\n') + 1
		end := strings.IndexByte(text[loc[0]:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += loc[0]
		}
		return f, strings.TrimRight(text[start:end], "\r"), true
	}
	return Failure{}, "", false
}

// BootError is a boot that did not reach what the test waited for. Its
// message carries the console tail, which is where the reason is.
type BootError struct {
	Want    string // what was awaited
	Reason  string // "timeout after 2m0s", "kernel panic: <line>", "QEMU exited"
	Tail    string
	LogFile string
}

func (e *BootError) Error() string {
	log := ""
	if e.LogFile != "" {
		log = ", full log " + e.LogFile
	}
	return fmt.Sprintf("waiting for %s: %s\n--- console tail%s ---\n%s\n--- end of console ---", e.Want, e.Reason, log, e.Tail)
}
