package bootmenu

import (
	"bytes"
	"strings"
	"testing"
)

// Every menu RenderGRUB and RenderRefind write reads back as MenuGenerated,
// and every kind of edit as MenuEdited; the header text anywhere but at the
// start is MenuForeign.
func TestClassifyMenu(t *testing.T) {
	es, err := Entries(sampleInstalled(), sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string][]byte{}
	for _, style := range []string{GRUBScript, GRUBConfig} {
		var b bytes.Buffer
		if err := RenderGRUB(&b, es, style); err != nil {
			t.Fatal(err)
		}
		rendered["grub "+style] = b.Bytes()
	}
	var b bytes.Buffer
	if err := RenderRefind(&b, es); err != nil {
		t.Fatal(err)
	}
	rendered["refind"] = b.Bytes()

	for name, gen := range rendered {
		g := string(gen)
		if len(g) < HeaderLen || !HasMenuHeader(gen[:HeaderLen]) {
			t.Errorf("%s: HasMenuHeader(first %d bytes) = false", name, HeaderLen)
		}
		sumLine := lineStarting(g, sumPrefix)
		for _, tc := range []struct {
			edit string
			data string
			want MenuState
		}{
			{"as written", g, MenuGenerated},
			{"entry appended", g + "\nmenuentry 'mine' {\n}\n", MenuEdited},
			{"newline appended", g + "\n", MenuEdited},
			{"parameter changed", strings.Replace(g, "root=LABEL=linux", "root=LABEL=other", 1), MenuEdited},
			{"last byte removed", g[:len(g)-1], MenuEdited},
			{"checksum line removed (an older dockroot's menu)", strings.Replace(g, sumLine, "", 1), MenuEdited},
			{"checksum changed", strings.Replace(g, sumLine, sumPrefix+strings.Repeat("0", 64)+"\n", 1), MenuEdited},
			{"checksum upper-cased", strings.Replace(g, sumLine, strings.ToUpper(sumLine), 1), MenuEdited},
			{"only the header", g[:strings.Index(g, sumPrefix)], MenuEdited},
			{"CRLF line ends", strings.ReplaceAll(g, "\n", "\r\n"), MenuForeign},
			{"a line above the header", "# mine\n" + g, MenuForeign},
			{"header on line 5", "a\nb\nc\nd\n" + g, MenuForeign},
			{"leading blank line", "\n" + g, MenuForeign},
			{"empty", "", MenuForeign},
		} {
			if got := ClassifyMenu([]byte(tc.data)); got != tc.want {
				t.Errorf("%s, %s: ClassifyMenu = %v, want %v", name, tc.edit, got, tc.want)
			}
			if tc.want == MenuForeign && HasMenuHeader([]byte(tc.data)) {
				t.Errorf("%s, %s: HasMenuHeader = true", name, tc.edit)
			}
		}
	}
}

// HeaderLen covers every header and its checksum line.
func TestHeaderLen(t *testing.T) {
	for _, h := range menuHeaders {
		if n := len(h) + sumLineLen; n > HeaderLen {
			t.Errorf("header %q and its checksum line take %d bytes, HeaderLen is %d", h, n, HeaderLen)
		}
	}
}

// lineStarting returns the whole line of s that starts with prefix.
func lineStarting(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], '\n')
	return s[i : i+j+1]
}
