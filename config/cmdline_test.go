package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func kv(k, v string) Param { return Param{Key: k, Value: v, HasValue: true} }
func bare(k string) Param  { return Param{Key: k} }

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		params   []Param
		initArgs []string
	}{
		{"empty", "", nil, nil},
		{"only whitespace", " \t\n ", nil, nil},
		{"ancestor line",
			"root=LABEL=linux rootflags=subvol=docker_rwlayer rw docker_path=docker toplayer=LABEL=linux toplayer_path=boot_docker",
			[]Param{kv("root", "LABEL=linux"), kv("rootflags", "subvol=docker_rwlayer"), bare("rw"),
				kv("docker_path", "docker"), kv("toplayer", "LABEL=linux"), kv("toplayer_path", "boot_docker")}, nil},
		{"proc cmdline trailing newline", "quiet splash\n", []Param{bare("quiet"), bare("splash")}, nil},
		{"tabs and runs of spaces", "a=1\t\tb   c=3", []Param{kv("a", "1"), bare("b"), kv("c", "3")}, nil},
		{"value with = splits on the first", "root=UUID=0a1b-2c3d", []Param{kv("root", "UUID=0a1b-2c3d")}, nil},
		{"rootflags with several options", "rootflags=subvol=x,compress=zstd", []Param{kv("rootflags", "subvol=x,compress=zstd")}, nil},
		{"empty value", "init=", []Param{kv("init", "")}, nil},
		{"quoted value", `key="a b" next`, []Param{kv("key", "a b"), bare("next")}, nil},
		{"whole parameter quoted", `"key=a b" next`, []Param{kv("key", "a b"), bare("next")}, nil},
		{"quoted bare word", `"a b" c`, []Param{bare("a b"), bare("c")}, nil},
		{"empty quotes", `x="" y`, []Param{kv("x", ""), bare("y")}, nil},
		{"lone empty quoted token", `""`, []Param{bare("")}, nil},
		{"quote in the middle stays (kernel keeps it)", `a=b"c d"e f`, []Param{kv("a", `b"c d"e`), bare("f")}, nil},
		{"quote opening the value, text after closing quote", `a="b c"d`, []Param{kv("a", `b c"d`)}, nil},
		{"single quotes are not quotes", `a='b c'`, []Param{kv("a", "'b"), bare("c'")}, nil},
		{"= in the first byte does not split", "=x", []Param{bare("=x")}, nil},
		{"= in the first byte, later = splits", "=x=y", []Param{kv("=x", "y")}, nil},
		{"dash in key stays literal", "dockroot-keep=2 a_b-c", []Param{kv("dockroot-keep", "2"), bare("a_b-c")}, nil},
		{"repeated keys all kept in order", "a=1 a=2 a", []Param{kv("a", "1"), kv("a", "2"), bare("a")}, nil},
		{"init args", "ro -- single foo=bar", []Param{bare("ro")}, []string{"single", "foo=bar"}},
		{"quoted init arg keeps key=value form", `-- "x=a b" y="c d"`, nil, []string{"x=a b", "y=c d"}},
		{"dashes at the end", "a --", []Param{bare("a")}, nil},
		{"quoted dashes still end the kernel part", `a "--" b`, []Param{bare("a")}, []string{"b"}},
		{"-- with a value is a parameter", "--=x y", []Param{kv("--", "x"), bare("y")}, nil},
		{"second -- ends init args as in the kernel", "a -- b -- c", []Param{bare("a")}, []string{"b"}},
		{"NUL ends the line", "a=1\x00b=2", []Param{kv("a", "1")}, nil},
		{"UTF-8 kept", "label=été", []Param{kv("label", "été")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCmdline(tt.in)
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(c.Params, tt.params) {
				t.Errorf("ParseCmdline(%q).Params =\n  %#v\nwant\n  %#v", tt.in, c.Params, tt.params)
			}
			if !reflect.DeepEqual(c.InitArgs, tt.initArgs) {
				t.Errorf("ParseCmdline(%q).InitArgs = %q, want %q", tt.in, c.InitArgs, tt.initArgs)
			}
		})
	}
}

func TestParseCmdlineUnbalancedQuote(t *testing.T) {
	tests := []struct {
		in     string
		offset int
		params []Param // the best-effort parse: what the kernel would see
	}{
		{`a=1 b="x y c=3`, 6, []Param{kv("a", "1"), kv("b", "x y c=3")}},
		{`a=1 "b=x y`, 4, []Param{kv("a", "1"), kv("b", "x y")}},
		{`a=1 "`, 4, []Param{kv("a", "1"), bare("")}},
		{`dockroot.onfail=reboot x="`, 25, []Param{kv("dockroot.onfail", "reboot"), kv("x", "")}},
		{`a=b"c d`, 3, []Param{kv("a", `b"c d`)}},
	}
	for _, tt := range tests {
		c, err := ParseCmdline(tt.in)
		var qe *QuoteError
		if !errors.As(err, &qe) {
			t.Errorf("ParseCmdline(%q) error = %v, want *QuoteError", tt.in, err)
			continue
		}
		if qe.Offset != tt.offset {
			t.Errorf("ParseCmdline(%q): quote offset %d, want %d", tt.in, qe.Offset, tt.offset)
		}
		for _, want := range []string{"never closed", "close the quote"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseCmdline(%q) error %q lacks %q", tt.in, err, want)
			}
		}
		if c == nil || !reflect.DeepEqual(c.Params, tt.params) {
			t.Errorf("ParseCmdline(%q) best effort = %#v, want %#v", tt.in, c, tt.params)
		}
	}
}

func TestCmdlineGet(t *testing.T) {
	c, err := ParseCmdline("a=1 b a=2 c= b=x b")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key      string
		val      string
		ok       bool
		hasValue bool
	}{
		{"a", "2", true, true},  // last one wins
		{"b", "", true, false},  // the last b is bare
		{"c", "", true, true},   // c= is an empty value, not bare
		{"d", "", false, false}, // absent
		{"A", "", false, false}, // keys are case-sensitive
	}
	for _, tt := range tests {
		v, ok := c.Get(tt.key)
		p, _ := c.Lookup(tt.key)
		if v != tt.val || ok != tt.ok || p.HasValue != tt.hasValue {
			t.Errorf("Get(%q) = %q, %v (HasValue %v); want %q, %v (HasValue %v)", tt.key, v, ok, p.HasValue, tt.val, tt.ok, tt.hasValue)
		}
	}
}

func TestCmdlineStringRoundTrip(t *testing.T) {
	for _, c := range []*Cmdline{
		{Params: []Param{kv("a", "b c"), bare("x y"), kv("k y", "v"), kv("e", ""), bare(""), kv("=a", "b"), kv("r", "UUID=1=2")}},
		{Params: []Param{bare("ro")}, InitArgs: []string{"single", "a=b c", " lead", ""}},
		{InitArgs: []string{"x"}},
	} {
		s := c.String()
		got, err := ParseCmdline(s)
		if err != nil {
			t.Fatalf("ParseCmdline(%q): %v", s, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("ParseCmdline(%q) = %#v, want %#v", s, got, c)
		}
	}
}
