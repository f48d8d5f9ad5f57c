package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestToplayerPathList: toplayer_path= is a comma-separated list, each
// element cleaned as one path was, placeholders kept for the boot to expand;
// "/etc/dockroot.json" takes the same string or a JSON array.
func TestToplayerPathList(t *testing.T) {
	tests := []struct {
		name     string
		cmdline  string
		json     string
		want     []string
		wantPath string
	}{
		{"one path, as before", "toplayer_path=/machine/", "", []string{"machine"}, "machine"},
		{"none", "", "", nil, ""},
		{"empty: no top layer", "toplayer_path=", "", nil, ""},
		{"a list, cleaned element by element", "toplayer_path=fleet/common,/fleet//machines/%u/", "",
			[]string{"fleet/common", "fleet/machines/%u"}, "fleet/common,fleet/machines/%u"},
		{"every placeholder", "toplayer_path=a/%u,b/%s,c/%m,d/100%%", "",
			[]string{"a/%u", "b/%s", "c/%m", "d/100%%"}, "a/%u,b/%s,c/%m,d/100%%"},
		{"the file's string", "", `{"toplayer_path": "fleet/common,fleet/%m"}`,
			[]string{"fleet/common", "fleet/%m"}, "fleet/common,fleet/%m"},
		{"the file's array", "", `{"toplayer_path": ["fleet/common", "fleet/machines/%u"]}`,
			[]string{"fleet/common", "fleet/machines/%u"}, "fleet/common,fleet/machines/%u"},
		{"the command line over the file's array", "toplayer_path=x", `{"toplayer_path": ["a", "b"]}`, []string{"x"}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(base+tt.cmdline, files(tt.json, ""))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(c.ToplayerPaths, tt.want) || c.ToplayerPath != tt.wantPath {
				t.Errorf("ToplayerPaths = %q, ToplayerPath = %q; want %q, %q", c.ToplayerPaths, c.ToplayerPath, tt.want, tt.wantPath)
			}
		})
	}
}

// TestToplayerPathListProblems: each element is checked as one path is,
// and the message names the element.
func TestToplayerPathListProblems(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		json    string
		want    [][]string // one problem per entry, in order, each with these words
	}{
		{"an element with ..", "toplayer_path=fleet/common,../x", "",
			[][]string{{`toplayer_path="fleet/common,../x"`, `element 2 ("../x")`, `contains ".."`, "toplayer_path=boot_docker"}}},
		{"an empty element", "toplayer_path=a,,b", "", [][]string{{"element 2 is empty", "toplayer_path=boot_docker"}}},
		{"a trailing comma", "toplayer_path=a,", "", [][]string{{"element 2 is empty"}}},
		{"an unknown placeholder", "toplayer_path=fleet/%x", "", [][]string{{"unknown placeholder %x", "%u", "%s", "%m", "%%"}}},
		{"an unknown placeholder in a list", "toplayer_path=a,fleet/%U", "", [][]string{{`element 2 ("fleet/%U")`, "unknown placeholder %U"}}},
		{"a lone percent", "toplayer_path=a%", "", [][]string{{`lone "%"`}}},
		{"an element inside the rw layer", "toplayer_path=fleet,rw/%u", "",
			[][]string{{`element 2 ("rw/%u")`, "inside the rw layer subvol=rw"}}},
		{"an element in .dockroot", "toplayer_path=fleet,.dockroot/x", "",
			[][]string{{`element 2 (".dockroot/x")`, "state directory .dockroot"}}},
		{"an element that is the Docker data root", "toplayer_path=fleet,var/lib/docker", "",
			[][]string{{`element 2 ("var/lib/docker")`, "Docker data root"}}},
		{"an element in a previous layer", "toplayer_path=fleet,rw.prev.1/%m", "",
			[][]string{{`element 2 ("rw.prev.1/%m")`, "previous or unfinished rw layer"}}},
		{"an element containing the rw layer", "toplayer_path=fleet,.", "",
			[][]string{{`element 2 (".")`}}},
		{"every bad element is reported", "toplayer_path=../a,ok,rw/x,b/%y", "",
			[][]string{{"element 1", `".."`}, {"element 3", "inside the rw layer"}, {"element 4", "unknown placeholder %y"}}},
		{"in the file's array", "", `{"toplayer_path": ["fleet", "../x"]}`,
			[][]string{{`element 2 ("../x")`, "/etc/dockroot.json"}}},
		{"one path keeps its message", "toplayer_path=../x", "", [][]string{{`toplayer_path="../x"`, `: contains ".."`}}},
		{"dockroot.toplayer_required garbage", "toplayer_path=a dockroot.toplayer_required=maybe", "",
			[][]string{{`dockroot.toplayer_required="maybe"`, "yes/no", "dockroot.toplayer_required=1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(base+tt.cmdline, files(tt.json, ""))
			var got []*ValidationError
			for _, p := range Problems(err) {
				if strings.HasPrefix(p.Key, "toplayer_") || p.Key == "dockroot.toplayer_required" {
					got = append(got, p)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Load(%q): %d top-layer problems (%v), want %d", tt.cmdline, len(got), err, len(tt.want))
			}
			for i, words := range tt.want {
				msg := got[i].Error()
				for _, w := range words {
					if !strings.Contains(msg, w) {
						t.Errorf("problem %d %q lacks %q", i+1, msg, w)
					}
				}
				if tt.name == "one path keeps its message" && strings.Contains(msg, "element") {
					t.Errorf("one path: %q names an element; a single path's message is as before", msg)
				}
			}
		})
	}
}

// TestToplayerPathFileTypes: the file's toplayer_path is a string or an
// array of strings, no element with a comma (it would be two).
func TestToplayerPathFileTypes(t *testing.T) {
	for _, tt := range []struct {
		json string
		want string
	}{
		{`{"toplayer_path": ["a,b"]}`, "a comma"},
		{`{"toplayer_path": ["a", 2]}`, `field "toplayer_path" must be a string or a list of strings`},
		{`{"toplayer_path": 3}`, `field "toplayer_path" must be a string or a list of strings`},
		{`{"keep": ["1"]}`, `field "keep" must be a whole number`},
	} {
		_, err := CheckFile("test.json", []byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckFile(%s) = %v, want an error containing %q", tt.json, err, tt.want)
		}
	}
	if _, err := CheckFile("test.json", []byte(`{"toplayer_path": ["fleet/common", "fleet/%u"], "toplayer_required": true}`)); err != nil {
		t.Errorf("CheckFile(array, toplayer_required): %v", err)
	}
}

// TestToplayerRequired: dockroot.toplayer_required is a yes/no flag,
// default off.
func TestToplayerRequired(t *testing.T) {
	for _, tt := range []struct {
		param string
		json  string
		want  bool
	}{
		{"", "", false},
		{"dockroot.toplayer_required", "", true},
		{"dockroot.toplayer_required=1", "", true},
		{"dockroot.toplayer_required=yes", "", true},
		{"dockroot.toplayer_required=0", "", false},
		{"dockroot.toplayer_required=off", "", false},
		{"", `{"toplayer_required": true}`, true},
		{"dockroot.toplayer_required=0", `{"toplayer_required": true}`, false},
	} {
		c, err := Load(base+"toplayer_path=a "+tt.param, files(tt.json, ""))
		if err != nil || c.ToplayerRequired != tt.want {
			t.Errorf("%s %s: ToplayerRequired = %v, %v; want %v", tt.param, tt.json, c.ToplayerRequired, err, tt.want)
		}
	}
}

// TestCheckToplayerPath: the boot checks an element again once the
// machine's values are in it, against the same overlaps.
func TestCheckToplayerPath(t *testing.T) {
	c, err := Load(base+"toplayer_path=fleet/%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		expanded string
		want     string // "" = fine
	}{
		{"fleet/SN1", ""},
		{"var", "Docker data root"},
		{"rw", "rw layer"},
		{".dockroot", "state directory"},
	} {
		err := c.CheckToplayerPath(tt.expanded)
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckToplayerPath(%q) = %v, want %q", tt.expanded, err, tt.want)
		}
	}
	other, err := Load(base+"toplayer=/dev/vdb toplayer_path=%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CheckToplayerPath("var"); err != nil {
		t.Errorf("on another device nothing overlaps: %v", err)
	}
}
