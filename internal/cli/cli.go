// Package cli is the small command framework of the host tool `dockroot`:
// an App is an explicit, ordered list of verbs (built in one place,
// internal/commands), and App.Main runs a command line against a Context,
// so tests drive the whole CLI in-process.
//
// Conventions it enforces for every verb:
//   - `dockroot help`, `dockroot help VERB` and `dockroot VERB --help` print
//     usage with examples to stdout and exit 0;
//   - a usage error (unknown flag, missing argument) prints the error and the
//     verb's usage to stderr and exits 2;
//   - a runtime error prints only "dockroot VERB: <error>" and exits 1; the
//     verb's error must not repeat "VERB", and App.Advise is the one place
//     where a runtime error may be turned into a different message.
//
// Flags use the standard flag package, so -x and --x are the same flag, and
// flags may come after positional arguments ("install REF --boot-dir D").
//
// It knows no verb: it must not import the verbs' packages, the boot
// (hook) or anything under cmd/.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes of every verb.
const (
	ExitOK    = 0 // success
	ExitError = 1 // the command failed at run time
	ExitUsage = 2 // the command line was wrong
)

// exitCodesHelp documents the exit codes in every help text.
const exitCodesHelp = `Exit codes:
  0  success
  1  the command failed (the error is printed)
  2  usage error: unknown verb or flag, missing or extra argument
`

// Context is everything a verb may touch of its process, so that tests can
// run verbs in-process with buffers and a fake environment.
type Context struct {
	// Ctx is cancelled when the run should stop (SIGINT or SIGTERM for the
	// process); verbs pass it to long I/O and Docker API calls. Nil means
	// context.Background().
	Ctx    context.Context
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Args   []string // the arguments after the program name
	Env    []string // "KEY=value" entries, as os.Environ returns them
}

// Context returns c.Ctx, or context.Background() when it is nil.
func (c *Context) Context() context.Context {
	if c.Ctx == nil {
		return context.Background()
	}
	return c.Ctx
}

// Getenv returns the value of key in Env, or "".
func (c *Context) Getenv(key string) string {
	for i := len(c.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(c.Env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// Example is a command line shown in a verb's help, with what it does.
type Example struct {
	Command string // without the program name: "initramfs -o /boot/dockroot.img"
	Doc     string
}

// Verb is one subcommand.
type Verb struct {
	Name     string
	Summary  string // one line, for `dockroot help`
	Usage    string // the synopsis after the program name: "initramfs -o FILE [--shell]"
	Doc      string // paragraphs shown by --help after the synopsis
	Examples []Example
	// Setup defines the verb's flags on fs and returns the function that
	// runs it with the positional arguments. Flag values live in variables
	// local to Setup, so each run starts from the defaults.
	Setup func(fs *flag.FlagSet) func(ctx *Context, args []string) error
}

// UsageError is a command line mistake: the verb's usage is printed with it
// and the exit code is ExitUsage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// App is a program made of verbs.
type App struct {
	Name    string // the program name in messages: "dockroot"
	Summary string // one line about the program
	// Verbs in the order `help` lists them. Names must be unique; New
	// checks that.
	Verbs []*Verb
	// Advise, when set, turns a verb's runtime error into the message
	// printed after "NAME VERB: ". It is the one place where the CLI adds
	// advice (flags to give) to a library's typed errors. Nil prints
	// err.Error().
	Advise func(verb string, err error) string
}

// New returns an App with verbs in the given order. A verb without a name
// or Setup, or two verbs with one name, is a programming error and panics
// at start-up, before any command runs.
func New(name, summary string, verbs ...*Verb) *App {
	seen := map[string]bool{}
	for _, v := range verbs {
		if v.Name == "" || v.Setup == nil {
			panic(fmt.Sprintf("cli: verb %q needs a name and Setup", v.Name))
		}
		if seen[v.Name] {
			panic(fmt.Sprintf("cli: verb %q listed twice", v.Name))
		}
		seen[v.Name] = true
	}
	return &App{Name: name, Summary: summary, Verbs: verbs}
}

func (a *App) verb(name string) (*Verb, bool) {
	for _, v := range a.Verbs {
		if v.Name == name {
			return v, true
		}
	}
	return nil, false
}

// Main runs the command line in ctx.Args and returns the exit code.
func (a *App) Main(ctx *Context) int {
	if len(ctx.Args) == 0 {
		fmt.Fprintf(ctx.Stderr, "%s: no command given\n\n", a.Name)
		a.printOverview(ctx.Stderr)
		return ExitUsage
	}
	name, rest := ctx.Args[0], ctx.Args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			a.printOverview(ctx.Stdout)
			return ExitOK
		}
		v, ok := a.verb(rest[0])
		if !ok {
			return a.unknownVerb(ctx, rest[0])
		}
		a.printVerbHelp(ctx.Stdout, v)
		return ExitOK
	}
	v, ok := a.verb(name)
	if !ok {
		return a.unknownVerb(ctx, name)
	}
	return a.runVerb(ctx, v, rest)
}

func (a *App) unknownVerb(ctx *Context, name string) int {
	fmt.Fprintf(ctx.Stderr, "%s: unknown command %q\n\n", a.Name, name)
	a.printOverview(ctx.Stderr)
	return ExitUsage
}

func (a *App) runVerb(ctx *Context, v *Verb, args []string) int {
	fs := flag.NewFlagSet(a.Name+" "+v.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed here, once
	fs.Usage = func() {}
	run := v.Setup(fs)

	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		a.printVerbHelp(ctx.Stdout, v)
		return ExitOK
	}
	if err != nil {
		return a.usageFailure(ctx, v, fs, err)
	}
	err = run(ctx, pos)
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return a.usageFailure(ctx, v, fs, err)
	}
	fmt.Fprintf(ctx.Stderr, "%s %s: %s\n", a.Name, v.Name, a.message(v, err))
	return ExitError
}

// message is the printed text of a verb's runtime error.
func (a *App) message(v *Verb, err error) string {
	if a.Advise != nil {
		return a.Advise(v.Name, err)
	}
	return err.Error()
}

func (a *App) usageFailure(ctx *Context, v *Verb, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(ctx.Stderr, "%s %s: %v\n\n", a.Name, v.Name, err)
	a.printVerbUsage(ctx.Stderr, v, fs)
	fmt.Fprintf(ctx.Stderr, "\nRun '%s %s --help' for examples.\n", a.Name, v.Name)
	return ExitUsage
}

// parseInterspersed parses flags anywhere among the arguments, as users
// type them ("install REF --boot-dir D"); everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		used := len(args) - len(rest)
		if used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (a *App) printOverview(w io.Writer) {
	fmt.Fprintf(w, "%s: %s\n\nUsage:\n  %s COMMAND [flags] [arguments]\n\nCommands:\n", a.Name, a.Summary, a.Name)
	width := 4
	for _, v := range a.Verbs {
		width = max(width, len(v.Name))
	}
	for _, v := range a.Verbs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, v.Name, v.Summary)
	}
	fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "show this help, or a command's help with examples")
	fmt.Fprintf(w, "\nRun '%s help COMMAND' or '%s COMMAND --help' for details and examples.\n\n%s", a.Name, a.Name, exitCodesHelp)
}

func (a *App) printVerbUsage(w io.Writer, v *Verb, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage:\n  %s %s\n", a.Name, v.Usage)
	if hasFlags(fs) {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
}

func (a *App) printVerbHelp(w io.Writer, v *Verb) {
	fs := flag.NewFlagSet(v.Name, flag.ContinueOnError)
	v.Setup(fs)
	fmt.Fprintf(w, "%s %s: %s\n\n", a.Name, v.Name, v.Summary)
	a.printVerbUsage(w, v, fs)
	if v.Doc != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(v.Doc, "\n"))
	}
	if len(v.Examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, ex := range v.Examples {
			if ex.Doc != "" {
				fmt.Fprintf(w, "  # %s\n", ex.Doc)
			}
			fmt.Fprintf(w, "  %s %s\n", a.Name, ex.Command)
		}
	}
	fmt.Fprintf(w, "\n%s", exitCodesHelp)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists flags GNU-style: "-o FILE" for one letter, "--name VALUE"
// otherwise (both spellings work).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		head := dash + f.Name
		if isBool(f) {
			arg = ""
		}
		if arg != "" {
			head += " " + arg
		}
		fmt.Fprintf(w, "  %s\n      %s", head, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Strings is a repeatable string flag: "--module a --module b".
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set appends one value.
func (s *Strings) Set(v string) error {
	*s = append(*s, v)
	return nil
}
