package hook

import (
	"fmt"
	"strings"
	"sync"
)

// memLog is a Logger that keeps every record with its level.
type memLog struct {
	mu    sync.Mutex
	lines []string // "LEVEL message"
}

func (l *memLog) add(level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, args...))
}

func (l *memLog) Printf(format string, args ...any)  { l.add("INFO", format, args...) }
func (l *memLog) Noticef(format string, args ...any) { l.add("NOTICE", format, args...) }
func (l *memLog) Warnf(format string, args ...any)   { l.add("WARN", format, args...) }
func (l *memLog) Errorf(format string, args ...any)  { l.add("ERR", format, args...) }
func (l *memLog) Debugf(format string, args ...any)  { l.add("DEBUG", format, args...) }

func (l *memLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// find returns the first line containing every part, or "".
func (l *memLog) find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return line
	}
	return ""
}
