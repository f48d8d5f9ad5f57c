package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
)

// testApp has one verb that records what it was run with.
type runRecord struct {
	name   string
	tags   []string
	force  bool
	args   []string
	called bool
}

func testApp(rec *runRecord, result func(args []string) error) *App {
	return New("tool", "a test tool", &Verb{
		Name:     "make",
		Summary:  "make a thing",
		Usage:    "make [--name N] [--tag T]... [--force] ARG...",
		Doc:      "Makes things.",
		Examples: []Example{{Command: "make --name x a", Doc: "make x from a"}},
		Setup: func(fs *flag.FlagSet) func(*Context, []string) error {
			var tags Strings
			name := fs.String("name", "default", "the `N` to use")
			force := fs.Bool("force", false, "overwrite")
			fs.Var(&tags, "tag", "add tag `T`")
			return func(ctx *Context, args []string) error {
				*rec = runRecord{name: *name, tags: tags, force: *force, args: args, called: true}
				return result(args)
			}
		},
	}, &Verb{Name: "other", Summary: "another verb", Usage: "other",
		Setup: func(fs *flag.FlagSet) func(*Context, []string) error {
			return func(*Context, []string) error { return nil }
		}})
}

func run(a *App, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = a.Main(&Context{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Args: args})
	return code, out.String(), errb.String()
}

func TestMainExitCodesAndStreams(t *testing.T) {
	result := func(args []string) error {
		switch {
		case len(args) == 0:
			return Usagef("at least one ARG is required")
		case args[0] == "fail":
			return errors.New("boom: disk full")
		}
		return nil
	}
	tests := []struct {
		name        string
		args        []string
		code        int
		stdoutHas   []string
		stderrHas   []string
		stderrLacks []string
		stdoutEmpty bool
	}{
		{"no command", nil, ExitUsage, nil, []string{"no command given", "Commands:", "make ", "Exit codes:"}, nil, true},
		{"help", []string{"help"}, ExitOK, []string{"Commands:", "make   make a thing", "other", "Exit codes:", "2  usage error"}, nil, nil, false},
		{"--help", []string{"--help"}, ExitOK, []string{"Commands:"}, nil, nil, false},
		{"help verb", []string{"help", "make"}, ExitOK, []string{"Usage:\n  tool make [--name N]", "--name N", "the N to use (default default)", "--tag T", "Examples:\n  # make x from a\n  tool make --name x a", "Exit codes:"}, nil, nil, false},
		{"verb --help", []string{"make", "--help"}, ExitOK, []string{"Examples:", "Makes things."}, nil, nil, false},
		{"verb -h", []string{"make", "-h"}, ExitOK, []string{"Examples:"}, nil, nil, false},
		{"help unknown", []string{"help", "nope"}, ExitUsage, nil, []string{`unknown command "nope"`}, nil, true},
		{"unknown verb", []string{"nope"}, ExitUsage, nil, []string{`unknown command "nope"`, "Commands:"}, nil, true},
		{"bad flag", []string{"make", "--bogus", "a"}, ExitUsage, nil, []string{"tool make: flag provided but not defined: -bogus", "Usage:\n  tool make", "Flags:", "--help' for examples"}, nil, true},
		{"bad flag value", []string{"make", "--force=maybe", "a"}, ExitUsage, nil, []string{"invalid boolean value"}, nil, true},
		{"missing value", []string{"make", "a", "--name"}, ExitUsage, nil, []string{"flag needs an argument: -name"}, nil, true},
		{"usage error from run", []string{"make"}, ExitUsage, nil, []string{"tool make: at least one ARG is required", "Usage:"}, nil, true},
		{"runtime error", []string{"make", "fail"}, ExitError, nil, []string{"tool make: boom: disk full\n"}, []string{"Usage:", "Flags:"}, true},
		{"success", []string{"make", "ok"}, ExitOK, nil, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rec runRecord
			code, stdout, stderr := run(testApp(&rec, result), tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdoutHas {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			for _, s := range tt.stderrLacks {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr has %q:\n%s", s, stderr)
				}
			}
			if tt.stdoutEmpty && stdout != "" {
				t.Errorf("stdout not empty: %s", stdout)
			}
			if tt.name == "runtime error" && stderr != "tool make: boom: disk full\n" {
				t.Errorf("runtime error output %q, want only the one error line", stderr)
			}
		})
	}
}

func TestFlagParsing(t *testing.T) {
	tests := []struct {
		args  []string
		name  string
		tags  []string
		force bool
		pos   []string
	}{
		{[]string{"a"}, "default", nil, false, []string{"a"}},
		{[]string{"-name", "x", "a"}, "x", nil, false, []string{"a"}},
		{[]string{"--name", "x", "a"}, "x", nil, false, []string{"a"}},
		{[]string{"--name=x", "a"}, "x", nil, false, []string{"a"}},
		{[]string{"a", "--name", "x", "b", "--force"}, "x", nil, true, []string{"a", "b"}}, // flags after positionals
		{[]string{"--tag", "t1", "-tag", "t2", "a", "--tag=t3"}, "default", []string{"t1", "t2", "t3"}, false, []string{"a"}},
		{[]string{"--force", "--", "--name", "-x"}, "default", nil, true, []string{"--name", "-x"}}, // after "--" all positional
		{[]string{"a", "--", "b"}, "default", nil, false, []string{"a", "b"}},
	}
	for _, tt := range tests {
		var rec runRecord
		code, _, stderr := run(testApp(&rec, func([]string) error { return nil }), append([]string{"make"}, tt.args...)...)
		if code != ExitOK {
			t.Errorf("%v: exit %d: %s", tt.args, code, stderr)
			continue
		}
		if rec.name != tt.name || !slices.Equal(rec.tags, tt.tags) || rec.force != tt.force || !slices.Equal(rec.args, tt.pos) {
			t.Errorf("%v: got name %q tags %v force %v args %v; want %q %v %v %v",
				tt.args, rec.name, rec.tags, rec.force, rec.args, tt.name, tt.tags, tt.force, tt.pos)
		}
	}
}

func TestFlagsStartFreshEachRun(t *testing.T) {
	var rec runRecord
	a := testApp(&rec, func([]string) error { return nil })
	run(a, "make", "--name", "x", "--tag", "t", "a")
	run(a, "make", "a")
	if rec.name != "default" || len(rec.tags) != 0 {
		t.Errorf("second run saw name %q tags %v from the first", rec.name, rec.tags)
	}
}

func TestGetenv(t *testing.T) {
	ctx := &Context{Env: []string{"A=1", "B=x=y", "A=2", "EMPTY="}}
	for key, want := range map[string]string{"A": "2", "B": "x=y", "EMPTY": "", "MISSING": ""} {
		if got := ctx.Getenv(key); got != want {
			t.Errorf("Getenv(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestNewDuplicatePanics(t *testing.T) {
	v := &Verb{Name: "x", Setup: func(*flag.FlagSet) func(*Context, []string) error { return nil }}
	defer func() {
		if recover() == nil {
			t.Error("listing a verb twice did not panic")
		}
	}()
	New("tool", "", v, v)
}

// help lists the verbs in the App's order, not sorted.
func TestHelpKeepsOrder(t *testing.T) {
	noop := func(*flag.FlagSet) func(*Context, []string) error { return nil }
	a := New("tool", "t", &Verb{Name: "zeta", Summary: "z", Setup: noop}, &Verb{Name: "alpha", Summary: "a", Setup: noop})
	_, out, _ := run(a, "help")
	if z, al := strings.Index(out, "zeta"), strings.Index(out, "alpha"); z < 0 || al < 0 || z > al {
		t.Errorf("help does not list zeta before alpha:\n%s", out)
	}
}

// Advise is the one place a runtime error's message is changed; usage
// errors are not advised.
func TestAdvise(t *testing.T) {
	var rec runRecord
	a := testApp(&rec, func(args []string) error {
		if len(args) == 0 {
			return Usagef("need ARG")
		}
		return errors.New("boom")
	})
	var got string
	a.Advise = func(verb string, err error) string {
		got = verb
		return err.Error() + "; try --force"
	}
	if code, _, stderr := run(a, "make", "x"); code != ExitError || stderr != "tool make: boom; try --force\n" || got != "make" {
		t.Errorf("advised runtime error: exit %d %q (verb %q)", code, stderr, got)
	}
	got = ""
	if _, _, stderr := run(a, "make"); got != "" || !strings.Contains(stderr, "tool make: need ARG\n") {
		t.Errorf("usage error went through Advise (%q): %q", got, stderr)
	}
}

func TestContextDefault(t *testing.T) {
	if (&Context{}).Context() != context.Background() {
		t.Error("a nil Ctx is not context.Background()")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if (&Context{Ctx: ctx}).Context() != ctx {
		t.Error("Ctx is not returned")
	}
}
