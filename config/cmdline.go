package config

import (
	"fmt"
	"strings"
)

// Param is one parameter of the kernel command line: "key=value", or a bare
// "key" (HasValue false).
type Param struct {
	Key      string
	Value    string
	HasValue bool
}

// String renders p the way Cmdline.String does: quoted when it holds
// whitespace, so that ParseCmdline reads it back unchanged.
func (p Param) String() string {
	if !p.HasValue {
		return quoteToken(p.Key)
	}
	if p.Key == "" || strings.IndexFunc(p.Key, isSpaceRune) >= 0 {
		// "a b=c" must be quoted whole: a quote after the '=' would not
		// protect the space in the key.
		return quoteToken(p.Key + "=" + p.Value)
	}
	if p.Value != "" && strings.IndexFunc(p.Value, isSpaceRune) >= 0 {
		return p.Key + `="` + p.Value + `"`
	}
	return p.Key + "=" + p.Value
}

// Cmdline is a parsed kernel command line.
type Cmdline struct {
	// Params are the parameters before a standalone "--", in order,
	// repeated keys included.
	Params []Param
	// InitArgs are the arguments after "--", which the kernel hands to
	// init (init/main.c: set_init_arg). nil when there are none.
	InitArgs []string
}

// Get returns the value of the last parameter named key: the kernel lets
// the last occurrence win (each __setup handler simply overwrites). A bare
// key returns ("", true). Keys are compared literally: the kernel treats
// '-' and '_' as equal only in module parameter names.
func (c *Cmdline) Get(key string) (string, bool) {
	p, ok := c.Lookup(key)
	return p.Value, ok
}

// Lookup is Get returning the whole Param, so a caller can tell "key" from
// "key=".
func (c *Cmdline) Lookup(key string) (Param, bool) {
	for i := len(c.Params) - 1; i >= 0; i-- {
		if c.Params[i].Key == key {
			return c.Params[i], true
		}
	}
	return Param{}, false
}

// String renders c as a command line that ParseCmdline reads back to an
// equal Cmdline, provided no key, value or init argument contains a double
// quote (the kernel's quoting has no escape character, so such strings
// cannot always be written back).
func (c *Cmdline) String() string {
	var parts []string
	for _, p := range c.Params {
		parts = append(parts, p.String())
	}
	if len(c.InitArgs) > 0 {
		parts = append(parts, "--")
		for _, a := range c.InitArgs {
			parts = append(parts, quoteToken(a))
		}
	}
	return strings.Join(parts, " ")
}

func quoteToken(s string) string {
	if s == "" || strings.IndexFunc(s, isSpaceRune) >= 0 {
		return `"` + s + `"`
	}
	return s
}

// QuoteError reports a double quote that is never closed. The kernel does
// not reject such a line: it takes everything from the quote to the end of
// the line as one parameter, which silently swallows the parameters after
// it, so dockroot refuses it.
type QuoteError struct {
	Offset int    // byte offset of the quote that is never closed
	Token  string // the parameter as the kernel would see it
}

func (e *QuoteError) Error() string {
	tok := e.Token
	if len(tok) > 60 {
		tok = tok[:60] + "..."
	}
	return fmt.Sprintf("kernel command line: the double quote at byte %d is never closed, so the kernel read everything after it as one parameter (%q); close the quote in the boot entry", e.Offset, tok)
}

// ParseCmdline parses a kernel command line (the content of /proc/cmdline)
// with the rules of the kernel's next_arg (lib/cmdline.c) and parse_args
// (kernel/params.c):
//
//   - parameters are separated by whitespace outside double quotes; there
//     is no other quoting and no escape character;
//   - a parameter splits into key and value at its first '=' (so
//     root=UUID=... keeps "UUID=..." as the value); an '=' in the first
//     byte does not count, as in the kernel;
//   - one double quote at the start of the parameter or of the value is
//     removed together with the parameter's last byte if that is a quote:
//     key="a b" and "key=a b" both give key / "a b"; quotes elsewhere stay
//     in the text, as the kernel leaves them;
//   - a standalone "--" ends the kernel's parameters; what follows is
//     InitArgs, each rebuilt as "key=value" the way the kernel's
//     repair_env_string does. A second "--" ends the init arguments too:
//     the kernel stops there and drops the rest.
//
// Deviations, all for inputs /proc/cmdline does not produce: only ASCII
// whitespace separates (the kernel's ctype also counts byte 0xA0, which
// would split UTF-8 text), and a NUL byte ends the line as it ends the
// kernel's C string.
//
// ParseCmdline never panics. For an unclosed quote it returns a
// *QuoteError together with the Cmdline the kernel would have seen (the
// rest of the line as one parameter), so a caller that must keep going, as
// PID 1 must, can still read dockroot.onfail= from before the quote.
func ParseCmdline(s string) (*Cmdline, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	c := &Cmdline{}
	var err error
	afterDashes := false
	for pos := skipSpaces(s, 0); pos < len(s); {
		p, next, openAt := nextArg(s, pos)
		if openAt >= 0 && err == nil {
			err = &QuoteError{Offset: openAt, Token: strings.TrimRight(s[pos:], " \t\n\v\f\r")}
		}
		pos = next
		if !p.HasValue && p.Key == "--" {
			if afterDashes {
				break
			}
			afterDashes = true
			continue
		}
		if afterDashes {
			arg := p.Key
			if p.HasValue {
				arg += "=" + p.Value
			}
			c.InitArgs = append(c.InitArgs, arg)
			continue
		}
		c.Params = append(c.Params, p)
	}
	return c, err
}

// nextArg reads the parameter starting at s[start] (not whitespace) and
// returns it, the offset of the next parameter and the offset of the quote
// left open (-1 if none). It mirrors lib/cmdline.c next_arg step by step; the index
// arithmetic is the kernel's, with a string slice in place of the NUL
// bytes the kernel writes into its buffer.
func nextArg(s string, start int) (p Param, next, openAt int) {
	a := s[start:]
	inQuote, quoted := false, false
	openAt = start
	if a[0] == '"' {
		a = a[1:]
		inQuote, quoted = true, true
	}
	skipped := len(s[start:]) - len(a)
	i, equals := 0, 0
	for ; i < len(a); i++ {
		if isSpace(a[i]) && !inQuote {
			break
		}
		if equals == 0 && a[i] == '=' {
			equals = i
		}
		if a[i] == '"' {
			inQuote = !inQuote
			if inQuote {
				openAt = start + skipped + i
			}
		}
	}
	if !inQuote {
		openAt = -1
	}
	// The kernel strips at most one trailing quote, at a[i-1]; which of
	// key or value it shortens depends on where that byte lies.
	stripLast := false
	keyEnd := i
	if equals == 0 {
		stripLast = quoted && i > 0 && a[i-1] == '"'
		if stripLast {
			keyEnd = i - 1
		}
		p = Param{Key: a[:keyEnd]}
	} else {
		vs, ve := equals+1, i
		if vs < i && a[vs] == '"' {
			vs++
			stripLast = a[i-1] == '"'
		}
		if quoted && a[i-1] == '"' {
			stripLast = true
		}
		if stripLast {
			ve = i - 1
		}
		if ve < vs {
			ve = vs
		}
		p = Param{Key: a[:equals], Value: a[vs:ve], HasValue: true}
	}
	next = start + skipped + i
	if next < len(s) {
		next++
	}
	return p, skipSpaces(s, next), openAt
}

func skipSpaces(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// isSpace is the kernel's isspace() restricted to ASCII.
func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

func isSpaceRune(r rune) bool { return r < 0x80 && isSpace(byte(r)) }
