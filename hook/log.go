package hook

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"
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

// kmsgBurst is how many records one open /dev/kmsg surely accepts under
// printk.devkmsg=ratelimit: each open file has its own ratelimit state
// (kernel/printk/printk.c, devkmsg_open) with DEFAULT_RATELIMIT_BURST = 10
// records per DEFAULT_RATELIMIT_INTERVAL = 5 s. Beyond the burst a record
// may be dropped silently (write(2) still reports success), so only the
// first kmsgBurst are counted on.
const kmsgBurst = 10

// maxConsoleLevel is the highest priority number (debug = 7) plus one: a
// console_loglevel above it echoes every record, whatever its priority.
const maxConsoleLevel = prioDebug + 1

// KmsgLogger writes records to the kernel log (/dev/kmsg) and to the
// console. The kernel log is what `journalctl -b` shows after the switch;
// the console is what the person at the machine sees, and it shows every
// record exactly once.
//
// The kernel prints a kernel-log record on the console itself when its
// priority is below console_loglevel (the first field of
// /proc/sys/kernel/printk: 7 by default, 4 with `quiet`), or always with
// ignore_loglevel. So for each record the logger picks one way onto the
// console:
//   - the kernel's echo, when the record goes to the kernel log, the kernel
//     surely accepts it and will print it: the logger does not print it
//     again;
//   - its own console write otherwise. If the record also goes to the
//     kernel log, it is written there at a priority the console does not
//     echo (console_loglevel; Debian's default 7 is debug), so that it is
//     not printed twice if the kernel happens to accept it.
//
// "Surely accepts": by default the kernel rate-limits each /dev/kmsg
// writer to a burst of 10 records per 5 s and silently drops the rest
// (printk.devkmsg=ratelimit), which would keep the first steps and lose the
// failures and timings. So unless the kernel was booted with
// printk.devkmsg=on, only notice, warning and error records go to the
// kernel log, and only the first kmsgBurst records on the open /dev/kmsg
// count as surely accepted; with printk.devkmsg=on every record goes there
// and is accepted.
//
// Records logged before /dev/kmsg and /proc exist are printed on the
// console at once and kept (up to maxEarly) for the kernel log, where they
// go, at a priority the console does not echo, once the kernel's settings
// can be read. With console_loglevel 8 or ignore_loglevel no priority is
// quiet: such records then appear twice rather than miss the kernel log.
type KmsgLogger struct {
	KmsgPath    string    // "/dev/kmsg"; "" disables the kernel log
	Console     io.Writer // the console; nil disables it
	PrintkPath  string    // "/proc/sys/kernel/printk": console_loglevel
	DevkmsgPath string    // "/proc/sys/kernel/printk_devkmsg": on, off or ratelimit
	// IgnoreLoglevelPath is "/sys/module/printk/parameters/ignore_loglevel":
	// Y when the kernel echoes every record. Optional: "" or a missing file
	// means N.
	IgnoreLoglevelPath string

	mu      sync.Mutex
	kmsg    io.WriteCloser
	open    func(string) (io.WriteCloser, error)
	early   []record
	dropped int
	debug   bool
	written int // writes to the open /dev/kmsg, against kmsgBurst
	// drain waits until the console has sent what was written to it
	// (tcdrain). The kernel writes its echo to the console driver directly,
	// ahead of the tty's buffer, so a record the kernel echoes right after
	// one the logger wrote itself could otherwise land in the middle of it.
	drain  func()
	direct bool // the console's last record was written by the logger

	// What the kernel does with records, once /proc could be read.
	known          bool
	devkmsgOn      bool // printk.devkmsg=on: no rate limit
	devkmsgOff     bool // printk.devkmsg=off: writes are refused
	consoleLevel   int  // records with a lower priority are echoed
	ignoreLoglevel bool // every record is echoed
}

type record struct {
	prio int
	text string
}

// NewLogger returns a logger writing to /dev/kmsg and console.
func NewLogger(console io.Writer) *KmsgLogger {
	l := &KmsgLogger{KmsgPath: "/dev/kmsg", Console: console,
		PrintkPath: "/proc/sys/kernel/printk", DevkmsgPath: "/proc/sys/kernel/printk_devkmsg",
		IgnoreLoglevelPath: "/sys/module/printk/parameters/ignore_loglevel"}
	if f, ok := console.(interface{ Fd() uintptr }); ok {
		fd := int(f.Fd())
		// TCSBRK with a non-zero argument is tcdrain(3); it fails harmlessly
		// on anything that is not a terminal.
		l.drain = func() { _ = unix.IoctlSetInt(fd, unix.TCSBRK, 1) }
	}
	return l
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
	l.kmsg, l.written = nil, 0
	return err
}

func (l *KmsgLogger) log(prio int, format string, args ...any) {
	recs := Records(fmt.Sprintf(format, args...), maxRecord-len(Prefix)-len("<7>\n"))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.learnKernel()
	l.openKmsg()
	for _, r := range recs {
		l.route(record{prio, Prefix + r})
	}
}

// route puts one record on the console exactly once, and in the kernel log
// when it may use a slot there (see KmsgLogger).
func (l *KmsgLogger) route(rec record) {
	if !l.ready() {
		if l.KmsgPath != "" {
			if len(l.early) < maxEarly {
				l.early = append(l.early, rec)
			} else {
				l.dropped++
			}
		}
		l.toConsole(rec.text)
		return
	}
	l.flushEarly()
	if !l.forKmsg(rec.prio) {
		l.toConsole(rec.text)
		return
	}
	if l.surelyAccepted() && l.echoes(rec.prio) {
		if l.direct && l.drain != nil && l.Console != nil {
			l.drain()
		}
		if l.writeKmsg(rec.prio, rec.text) == nil {
			l.direct = false
			return
		}
		// Refused, so not echoed either: the console needs it.
	} else {
		l.writeKmsg(l.quietPrio(rec.prio), rec.text)
	}
	l.toConsole(rec.text)
}

// ready says whether records can go to the kernel log now: /dev/kmsg is
// open and the kernel's settings are known.
func (l *KmsgLogger) ready() bool {
	return l.kmsg != nil && (l.known || l.PrintkPath == "")
}

func (l *KmsgLogger) toConsole(text string) {
	if l.Console != nil {
		fmt.Fprintf(l.Console, "%s\n", text)
		l.direct = true
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
	if l.IgnoreLoglevelPath != "" {
		if b, err := os.ReadFile(l.IgnoreLoglevelPath); err == nil {
			l.ignoreLoglevel = strings.TrimSpace(string(b)) == "Y"
		}
	}
}

// echoes says whether the kernel prints a record of prio on the console.
func (l *KmsgLogger) echoes(prio int) bool {
	return l.ignoreLoglevel || prio < l.consoleLevel
}

// surelyAccepted says whether the next write to /dev/kmsg is surely
// logged, not rate-limited away.
func (l *KmsgLogger) surelyAccepted() bool {
	return l.devkmsgOn || l.written < kmsgBurst
}

// quietPrio returns the priority at which a record of prio goes to the
// kernel log without being echoed: prio itself, or console_loglevel when
// prio is below it. When every priority is echoed it returns prio.
func (l *KmsgLogger) quietPrio(prio int) int {
	if l.ignoreLoglevel || !l.echoes(prio) || l.consoleLevel >= maxConsoleLevel {
		return prio
	}
	return l.consoleLevel
}

// forKmsg says whether a record of prio is worth one of the kernel log's
// rate-limited slots.
func (l *KmsgLogger) forKmsg(prio int) bool {
	if l.devkmsgOff {
		return false
	}
	return l.devkmsgOn || prio <= prioNotice
}

// flushEarly writes the records kept from before /dev/kmsg and /proc
// existed. The console already showed them, so they go at a quiet
// priority.
func (l *KmsgLogger) flushEarly() {
	if len(l.early) == 0 && l.dropped == 0 {
		return
	}
	early := l.early
	if l.dropped > 0 {
		early = append(early, record{prioWarn, fmt.Sprintf("%s%d early records were not kept for the kernel log", Prefix, l.dropped)})
	}
	l.early, l.dropped = nil, 0
	for _, e := range early {
		if l.forKmsg(e.prio) {
			l.writeKmsg(l.quietPrio(e.prio), e.text)
		}
	}
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
		l.kmsg, l.written = f, 0
	}
}

// writeKmsg writes one record: one write(2) is one kmsg record. Every
// write counts against the kernel's rate limit, accepted or not.
func (l *KmsgLogger) writeKmsg(prio int, text string) error {
	l.written++
	_, err := io.WriteString(l.kmsg, fmt.Sprintf("<%d>%s\n", prio, text))
	return err
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
