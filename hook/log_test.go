package hook

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
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

func TestKmsgLoggerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name, level, devkmsg string
		kmsg, console        string // levels that reach each, in logging order
	}{
		// Rate-limited: only what must survive goes to the kernel log.
		{"ratelimit", "7", "ratelimit", "N W E E", "I N W E E D"},
		// No rate limit: everything goes there, and what the kernel echoes
		// (below console_loglevel) is not printed twice.
		{"on, quiet", "4", "on", "I N W E E D", "I N W D"},
		{"on, verbose", "7", "on", "I N W E E D", "D"},
		{"off", "7", "off", "", "I N W E E D"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var console bytes.Buffer
			k := &writes{}
			printk, mode := procFiles(t, tc.level, tc.devkmsg)
			l := &KmsgLogger{KmsgPath: "/dev/kmsg", Console: &console, PrintkPath: printk, DevkmsgPath: mode,
				open: func(string) (io.WriteCloser, error) { return k, nil }}
			l.SetDebug(true)
			l.Printf("I")
			l.Noticef("N")
			l.Warnf("W")
			l.Errorf("E\nE")
			l.Debugf("D")

			var got []string
			for _, r := range k.recs {
				if strings.Count(r, "\n") != 1 {
					t.Errorf("record %q is not one line", r)
				}
				got = append(got, strings.TrimSuffix(strings.TrimPrefix(r[3:], "dockroot: "), "\n"))
				if want := map[byte]string{'6': "I", '5': "N", '4': "W", '3': "E", '7': "D"}[r[1]]; !strings.HasSuffix(r, want+"\n") {
					t.Errorf("record %q has the wrong priority", r)
				}
			}
			if strings.Join(got, " ") != tc.kmsg {
				t.Errorf("kmsg got %q, want %q", strings.Join(got, " "), tc.kmsg)
			}
			gotC := strings.Fields(strings.ReplaceAll(console.String(), "dockroot: ", ""))
			if strings.Join(gotC, " ") != tc.console {
				t.Errorf("console got %q, want %q", strings.Join(gotC, " "), tc.console)
			}
		})
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
	// may use the limited slots.
	if want := "<5>dockroot: before /dev\n<3>dockroot: after /dev, before /proc\n<3>dockroot: after /dev\n"; string(got) != want {
		t.Errorf("kmsg file = %q, want %q", got, want)
	}
	if !strings.Contains(console.String(), "info before /dev") {
		t.Errorf("console lost the early record: %q", console.String())
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
