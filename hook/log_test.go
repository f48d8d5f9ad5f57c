package hook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// writes records each write(2) separately, as /dev/kmsg sees them.
type writes struct{ recs []string }

func (w *writes) Write(p []byte) (int, error) { w.recs = append(w.recs, string(p)); return len(p), nil }
func (w *writes) Close() error                { return nil }

// procFiles writes fake /proc/sys/kernel/printk{,_devkmsg} files.
func procFiles(t *testing.T, consoleLevel, devkmsg string) (printk, mode string) {
	dir := t.TempDir()
	printk, mode = filepath.Join(dir, "printk"), filepath.Join(dir, "printk_devkmsg")
	mustDo(t, os.WriteFile(printk, []byte(consoleLevel+"\t4\t1\t7\n"), 0o644))
	mustDo(t, os.WriteFile(mode, []byte(devkmsg+"\n"), 0o644))
	return printk, mode
}

// policyLogger is a KmsgLogger over fake /proc files and a fake /dev/kmsg,
// with its console and its tcdrain calls recorded.
func policyLogger(t *testing.T, level, devkmsg, ignoreLoglevel string) (*KmsgLogger, *writes, *bytes.Buffer, *int) {
	t.Helper()
	var console bytes.Buffer
	k := &writes{}
	printk, mode := procFiles(t, level, devkmsg)
	ignore := filepath.Join(t.TempDir(), "ignore_loglevel")
	mustDo(t, os.WriteFile(ignore, []byte(ignoreLoglevel+"\n"), 0o644))
	drains := new(int)
	l := &KmsgLogger{KmsgPath: "/dev/kmsg", Console: &console, PrintkPath: printk, DevkmsgPath: mode, IgnoreLoglevelPath: ignore,
		open:  func(string) (io.WriteCloser, error) { return k, nil },
		drain: func() { *drains++ }}
	return l, k, &console, drains
}

// kmsgRecords renders what reached /dev/kmsg as "TEXT:PRIORITY".
func kmsgRecords(t *testing.T, k *writes) string {
	t.Helper()
	var got []string
	for _, r := range k.recs {
		if strings.Count(r, "\n") != 1 || len(r) < 4 || r[0] != '<' || r[2] != '>' {
			t.Errorf("record %q is not one line with a priority", r)
			continue
		}
		got = append(got, strings.TrimSuffix(strings.TrimPrefix(r[3:], "dockroot: "), "\n")+":"+r[1:2])
	}
	return strings.Join(got, " ")
}

func consoleRecords(console *bytes.Buffer) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(console.String(), "dockroot: ", "")), " ")
}

// The routing table: what reaches the kernel log (at which priority), and
// what the logger prints on the console itself. Every record must show on
// the console exactly once: printed by the logger, or echoed by the kernel
// (accepted, and below console_loglevel), never both.
func TestKmsgLoggerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name, level, devkmsg, ignore string
		kmsg                         string // "TEXT:PRIORITY", in logging order
		console                      string // printed by the logger
		echoed                       string // printed by the kernel
	}{
		// Rate-limited: only what must survive uses the kernel log's
		// slots; within the burst the kernel surely takes them and echoes
		// them, so the logger does not print them.
		{"ratelimit, verbose", "7", "ratelimit", "N", "N:5 W:4 E:3 E:3", "I D", "N W E E"},
		{"ratelimit, quiet", "4", "ratelimit", "N", "N:5 W:4 E:3 E:3", "I N W D", "E E"},
		{"ratelimit, loglevel=8", "8", "ratelimit", "N", "N:5 W:4 E:3 E:3", "I D", "N W E E"},
		// No rate limit: everything goes there.
		{"on, quiet", "4", "on", "N", "I:6 N:5 W:4 E:3 E:3 D:7", "I N W D", "E E"},
		{"on, verbose", "7", "on", "N", "I:6 N:5 W:4 E:3 E:3 D:7", "D", "I N W E E"},
		{"on, ignore_loglevel", "4", "on", "Y", "I:6 N:5 W:4 E:3 E:3 D:7", "", "I N W E E D"},
		{"off", "7", "off", "N", "", "I N W E E D", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, k, console, _ := policyLogger(t, tc.level, tc.devkmsg, tc.ignore)
			l.SetDebug(true)
			l.Printf("I")
			l.Noticef("N")
			l.Warnf("W")
			l.Errorf("E\nE")
			l.Debugf("D")

			if got := kmsgRecords(t, k); got != tc.kmsg {
				t.Errorf("kmsg got %q, want %q", got, tc.kmsg)
			}
			if got := consoleRecords(console); got != tc.console {
				t.Errorf("console got %q, want %q", got, tc.console)
			}
			// What the kernel echoes follows from its rules, applied to
			// the records it got.
			var echoed []string
			for _, r := range strings.Fields(kmsgRecords(t, k)) {
				text, prio, _ := strings.Cut(r, ":")
				level, _ := strconv.Atoi(tc.level)
				if p, _ := strconv.Atoi(prio); p < level || tc.ignore == "Y" {
					echoed = append(echoed, text)
				}
			}
			if got := strings.Join(echoed, " "); got != tc.echoed {
				t.Errorf("the kernel echoes %q, want %q", got, tc.echoed)
			}
			if all := len(strings.Fields(tc.console)) + len(echoed); all != 6 {
				t.Errorf("the console shows %d records, want each of the 6 once", all)
			}
		})
	}
}

// Past the burst the kernel may drop a record silently, so the logger
// prints it itself and writes it to the kernel log at a priority the
// console does not echo.
func TestKmsgLoggerRateLimitBurst(t *testing.T) {
	l, k, console, _ := policyLogger(t, "7", "ratelimit", "N")
	for i := 1; i <= kmsgBurst+2; i++ {
		l.Warnf("w%d", i)
	}
	var want []string
	for i := 1; i <= kmsgBurst; i++ {
		want = append(want, fmt.Sprintf("w%d:4", i))
	}
	want = append(want, fmt.Sprintf("w%d:7", kmsgBurst+1), fmt.Sprintf("w%d:7", kmsgBurst+2))
	if got := kmsgRecords(t, k); got != strings.Join(want, " ") {
		t.Errorf("kmsg got %q, want %q", got, strings.Join(want, " "))
	}
	if got, want := consoleRecords(console), fmt.Sprintf("w%d w%d", kmsgBurst+1, kmsgBurst+2); got != want {
		t.Errorf("console got %q, want %q", got, want)
	}
	// A new open file has a new rate limit.
	l.Close()
	l.Warnf("again")
	if !strings.HasSuffix(kmsgRecords(t, k), "again:4") || strings.Contains(console.String(), "again") {
		t.Errorf("after reopening: kmsg %q, console %q", kmsgRecords(t, k), console.String())
	}
}

// The kernel prints its echo ahead of what still sits in the tty buffer,
// so the logger drains the console before a record the kernel echoes when
// its own output came last.
func TestKmsgLoggerDrainsBeforeEcho(t *testing.T) {
	l, _, _, drains := policyLogger(t, "7", "ratelimit", "N")
	l.Printf("direct")
	l.Noticef("echoed") // drain
	l.Noticef("echoed")
	l.Printf("direct")
	l.Errorf("echoed") // drain
	if *drains != 2 {
		t.Errorf("drained %d times, want 2", *drains)
	}
}

func TestKmsgLoggerRecords(t *testing.T) {
	var console bytes.Buffer
	k := &writes{}
	printk, mode := procFiles(t, "1", "on")
	l := &KmsgLogger{KmsgPath: "/dev/kmsg", Console: &console, PrintkPath: printk, DevkmsgPath: mode,
		open: func(string) (io.WriteCloser, error) { return k, nil }}

	l.Printf("[1/11] mount: starting")
	l.Errorf("BOOT FAILED: two\nlines")
	l.Warnf("careful")
	l.Debugf("hidden")
	l.SetDebug(true)
	l.Debugf("shown %d", 7)

	want := []string{
		"<6>dockroot: [1/11] mount: starting\n",
		"<3>dockroot: BOOT FAILED: two\n",
		"<3>dockroot: lines\n",
		"<4>dockroot: careful\n",
		"<7>dockroot: shown 7\n",
	}
	if strings.Join(k.recs, "|") != strings.Join(want, "|") {
		t.Errorf("kmsg records:\n%q\nwant\n%q", k.recs, want)
	}
	wantConsole := "dockroot: [1/11] mount: starting\ndockroot: BOOT FAILED: two\ndockroot: lines\ndockroot: careful\ndockroot: shown 7\n"
	if console.String() != wantConsole {
		t.Errorf("console:\n%s\nwant\n%s", console.String(), wantConsole)
	}
}

func TestKmsgLoggerCapsRecordLength(t *testing.T) {
	k := &writes{}
	printk, mode := procFiles(t, "7", "on")
	l := &KmsgLogger{KmsgPath: "/dev/kmsg", PrintkPath: printk, DevkmsgPath: mode,
		open: func(string) (io.WriteCloser, error) { return k, nil }}
	long := strings.Repeat("é", 1500) // 3000 bytes, two-byte runes
	l.Printf("%s", long)
	if len(k.recs) < 4 {
		t.Fatalf("a 3000-byte line became %d records, want it split", len(k.recs))
	}
	var joined strings.Builder
	for _, r := range k.recs {
		if len(r) >= 1024 {
			t.Errorf("record of %d bytes, want < 1024", len(r))
		}
		if !strings.HasPrefix(r, "<6>dockroot: ") || !strings.HasSuffix(r, "\n") || strings.Count(r, "\n") != 1 {
			t.Errorf("malformed record %q", r)
		}
		body := strings.TrimSuffix(strings.TrimPrefix(r, "<6>dockroot: "), "\n")
		if !utf8.ValidString(body) {
			t.Errorf("record cut inside a rune: %q", body)
		}
		joined.WriteString(body)
	}
	if joined.String() != long {
		t.Error("the split records do not add up to the message")
	}
}

func TestKmsgLoggerKeepsEarlyRecords(t *testing.T) {
	dir := t.TempDir()
	kmsg := filepath.Join(dir, "kmsg") // does not exist yet: no devtmpfs
	var console bytes.Buffer
	printk, mode := procFiles(t, "4", "ratelimit")
	l := &KmsgLogger{KmsgPath: kmsg, Console: &console, PrintkPath: printk + ".missing", DevkmsgPath: mode}
	l.Noticef("before /dev")
	l.Printf("info before /dev")
	if _, err := os.Stat(kmsg); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("logger created %s: %v", kmsg, err)
	}
	if err := os.WriteFile(kmsg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l.Errorf("after /dev, before /proc")
	l.PrintkPath = printk // /proc is mounted
	l.Errorf("after /dev")
	l.Close()
	got, err := os.ReadFile(kmsg)
	if err != nil {
		t.Fatal(err)
	}
	// Kept until the kernel's rate-limit mode was known, then only what
	// may use the limited slots. The console showed the kept ones at once,
	// so they go at a priority it does not echo (console_loglevel 4); the
	// last one is the kernel's to echo.
	if want := "<5>dockroot: before /dev\n<4>dockroot: after /dev, before /proc\n<3>dockroot: after /dev\n"; string(got) != want {
		t.Errorf("kmsg file = %q, want %q", got, want)
	}
	if want := "dockroot: before /dev\ndockroot: info before /dev\ndockroot: after /dev, before /proc\n"; console.String() != want {
		t.Errorf("console = %q, want %q", console.String(), want)
	}
}

func TestKmsgLoggerFallsBackToConsole(t *testing.T) {
	var console bytes.Buffer
	l := &KmsgLogger{KmsgPath: filepath.Join(t.TempDir(), "no", "kmsg"), Console: &console}
	for i := 0; i < maxEarly+10; i++ {
		l.Printf("line %d", i)
	}
	if n := strings.Count(console.String(), "dockroot: line "); n != maxEarly+10 {
		t.Errorf("console has %d lines, want %d", n, maxEarly+10)
	}
	if len(l.early) != maxEarly || l.dropped != 10 {
		t.Errorf("kept %d early records and dropped %d, want %d and 10", len(l.early), l.dropped, maxEarly)
	}
}

func TestRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  string
		max  int
		want []string
	}{
		{"plain", "hello", 100, []string{"hello"}},
		{"trailing newline", "hello\n", 100, []string{"hello"}},
		{"lines", "a\nb\r\nc", 100, []string{"a", "b", "c"}},
		{"empty", "", 100, []string{""}},
		{"control chars", "a\x1b[2Jb\tc\x00", 100, []string{"a?[2Jb\tc?"}},
		{"split", "abcdefg", 3, []string{"abc", "def", "g"}},
		{"utf8 boundary", "aéb", 2, []string{"a", "é", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Records(tc.msg, tc.max)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("Records(%q, %d) = %q, want %q", tc.msg, tc.max, got, tc.want)
			}
		})
	}
}
