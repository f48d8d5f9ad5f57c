package hook

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Logger is where the boot sequence reports. Every record carries the
// "dockroot: " prefix. Noticef is for the few records that must reach the
// kernel log even when it is rate-limited (the first line, the timing
// summary, the exec of init); Warnf and Errorf records always go there too;
// Debugf records appear only with dockroot.debug.
type Logger interface {
	Printf(format string, args ...any)
	Noticef(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
	Debugf(format string, args ...any)
}

// debugSetter is implemented by loggers whose debug output can be switched
// on once the configuration (dockroot.debug) has been read.
type debugSetter interface{ SetDebug(bool) }

// Prefix starts every log record, on the console and in the kernel log, so
// `journalctl -b | grep dockroot:` finds the boot.
const Prefix = "dockroot: "

// Syslog priorities for /dev/kmsg records (<linux/kern_levels.h>). The kernel
// fills in the facility (LOG_USER) for records written from user space.
const (
	prioErr    = 3
	prioWarn   = 4
	prioNotice = 5
	prioInfo   = 6
	prioDebug  = 7
)

// maxRecord caps one /dev/kmsg write. The kernel rejects or truncates larger
// records (LOG_LINE_MAX is 1024 minus the record header), so longer lines are
// split into several records instead of losing their end.
const maxRecord = 976

// maxEarly bounds how many records are held back for /dev/kmsg while it does
// not exist yet (before devtmpfs is mounted on /dev).
const maxEarly = 64

// KmsgLogger writes records to the kernel log (/dev/kmsg) and to the
// console. The kernel log is what `journalctl -b` shows after the switch;
// the console is what the person at the machine sees, and it always gets
// every record exactly once.
//
// By default the kernel rate-limits each /dev/kmsg writer to a burst of 10
// records per 5 s and silently drops the rest (printk.devkmsg=ratelimit),
// which would keep the first steps and lose the failures and timings. So
// unless the kernel was booted with printk.devkmsg=on, only notice, warning
// and error records go to the kernel log; with it, every record does.
//
// The kernel echoes kernel-log records below console_loglevel to the
// console itself. When every record reaches the kernel log
// (printk.devkmsg=on), those are not written to the console again.
//
// Records logged before /dev/kmsg and /proc exist are kept (up to
// maxEarly) and sorted out once they do.
type KmsgLogger struct {
	KmsgPath    string    // "/dev/kmsg"; "" disables the kernel log
	Console     io.Writer // the console; nil disables it
	PrintkPath  string    // "/proc/sys/kernel/printk": console_loglevel
	DevkmsgPath string    // "/proc/sys/kernel/printk_devkmsg": on, off or ratelimit

	mu      sync.Mutex
	kmsg    io.WriteCloser
	open    func(string) (io.WriteCloser, error)
	early   []record
	dropped int
	debug   bool

	// What the kernel does with records, once /proc could be read.
	known        bool
	devkmsgOn    bool // printk.devkmsg=on: no rate limit
	devkmsgOff   bool // printk.devkmsg=off: writes are refused
	consoleLevel int  // records with a lower priority are echoed
}

type record struct {
	prio int
	text string
}

// NewLogger returns a logger writing to /dev/kmsg and console.
func NewLogger(console io.Writer) *KmsgLogger {
	return &KmsgLogger{KmsgPath: "/dev/kmsg", Console: console,
		PrintkPath: "/proc/sys/kernel/printk", DevkmsgPath: "/proc/sys/kernel/printk_devkmsg"}
}

// SetDebug switches Debugf records on or off.
func (l *KmsgLogger) SetDebug(on bool) {
	l.mu.Lock()
	l.debug = on
	l.mu.Unlock()
}

func (l *KmsgLogger) Printf(format string, args ...any)  { l.log(prioInfo, format, args...) }
func (l *KmsgLogger) Noticef(format string, args ...any) { l.log(prioNotice, format, args...) }
func (l *KmsgLogger) Warnf(format string, args ...any)   { l.log(prioWarn, format, args...) }
func (l *KmsgLogger) Errorf(format string, args ...any)  { l.log(prioErr, format, args...) }

func (l *KmsgLogger) Debugf(format string, args ...any) {
	l.mu.Lock()
	on := l.debug
	l.mu.Unlock()
	if on {
		l.log(prioDebug, format, args...)
	}
}

// Close releases /dev/kmsg. The logger stays usable: it reopens on demand.
func (l *KmsgLogger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kmsg == nil {
		return nil
	}
	err := l.kmsg.Close()
	l.kmsg = nil
	return err
}

func (l *KmsgLogger) log(prio int, format string, args ...any) {
	recs := Records(fmt.Sprintf(format, args...), maxRecord-len(Prefix)-len("<7>\n"))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learnKernel()
	l.openKmsg()
	for _, r := range recs {
		rec := record{prio, Prefix + r}
		if l.Console != nil && !l.kernelEchoes(prio) {
			fmt.Fprintf(l.Console, "%s\n", rec.text)
		}
		l.toKmsg(rec)
	}
}

// learnKernel reads the kernel's printk settings once /proc is mounted.
func (l *KmsgLogger) learnKernel() {
	if l.known || l.PrintkPath == "" || l.DevkmsgPath == "" {
		return
	}
	p, err1 := os.ReadFile(l.PrintkPath)
	d, err2 := os.ReadFile(l.DevkmsgPath)
	if err1 != nil || err2 != nil {
		return
	}
	level, err := strconv.Atoi(strings.Fields(string(p) + " 0")[0])
	if err != nil {
		return
	}
	mode := strings.TrimSpace(string(d))
	l.known, l.consoleLevel = true, level
	l.devkmsgOn, l.devkmsgOff = mode == "on", mode == "off"
}

// kernelEchoes says whether the kernel itself prints a record of prio to
// the console, reliably: only when nothing is rate-limited away.
func (l *KmsgLogger) kernelEchoes(prio int) bool {
	return l.known && l.devkmsgOn && l.kmsg != nil && prio < l.consoleLevel
}

// forKmsg says whether a record of prio is worth one of the kernel log's
// rate-limited slots.
func (l *KmsgLogger) forKmsg(prio int) bool {
	if l.devkmsgOff {
		return false
	}
	return l.devkmsgOn || prio <= prioNotice
}

// toKmsg writes one record, opening /dev/kmsg on first use. Until both
// /dev/kmsg and /proc can be read, records are kept for later.
func (l *KmsgLogger) toKmsg(rec record) {
	if l.KmsgPath == "" {
		return
	}
	if l.kmsg == nil || !l.known && l.PrintkPath != "" {
		if len(l.early) < maxEarly {
			l.early = append(l.early, rec)
		} else {
			l.dropped++
		}
		return
	}
	if len(l.early) > 0 || l.dropped > 0 {
		early := l.early
		if l.dropped > 0 {
			early = append(early, record{prioWarn, fmt.Sprintf("%s%d early records were not kept for the kernel log", Prefix, l.dropped)})
		}
		l.early, l.dropped = nil, 0
		for _, e := range early {
			l.writeKmsg(e)
		}
	}
	l.writeKmsg(rec)
}

// openKmsg opens /dev/kmsg if it is not open yet and exists by now.
func (l *KmsgLogger) openKmsg() {
	if l.kmsg != nil || l.KmsgPath == "" {
		return
	}
	open := l.open
	if open == nil {
		open = openKmsgFile
	}
	if f, err := open(l.KmsgPath); err == nil {
		l.kmsg = f
	}
}

func (l *KmsgLogger) writeKmsg(rec record) {
	if !l.forKmsg(rec.prio) {
		return
	}
	// One write(2) is one kmsg record. A failed or rate-limited write is
	// not reported: the console has the same text.
	io.WriteString(l.kmsg, fmt.Sprintf("<%d>%s\n", rec.prio, rec.text))
}

func openKmsgFile(path string) (io.WriteCloser, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
}

// Records splits a message into log records: one per line, each at most max
// bytes (cut on a UTF-8 boundary), with control characters other than tab
// replaced by '?' so a record can never carry a second line or a terminal
// escape.
func Records(msg string, max int) []string {
	msg = strings.TrimRight(msg, "\n")
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.Map(func(r rune) rune {
			if r == '\t' || (r >= 0x20 && r != 0x7f) {
				return r
			}
			return '?'
		}, strings.TrimRight(line, "\r"))
		for len(line) > max {
			cut := max
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			if cut == 0 {
				cut = max
			}
			out = append(out, line[:cut])
			line = line[cut:]
		}
		out = append(out, line)
	}
	return out
}
