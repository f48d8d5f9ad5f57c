package capture

import (
	"reflect"
	"testing"
)

// TestSelectAccountsEdges: lines the merge would refuse, second lines of
// a name, NIS compat lines and human users without shadow or group lines
// are reported, never written; a nologin human is taken with a note; an
// account file the machine lacks is not made, one with nothing to take
// is written empty.
func TestSelectAccountsEdges(t *testing.T) {
	src := map[string][]byte{
		"etc/passwd": []byte(lines(
			"# a comment",
			"",
			"alice:x:1000:1000::/home/alice:/bin/bash",
			"alice:x:1005:1005::/home/alice2:/bin/bash",
			"broken:x:1001:1001::/home/broken",
			"carol:x:10o2:1002::/home/carol:/bin/sh",
			"+nis::::::",
			"kiosk:x:1003:1003::/home/kiosk:/usr/sbin/nologin",
			"dave:x:1004:1004::/home/dave:/bin/sh")),
		"etc/shadow": []byte(lines("alice:!:1::::::", "kiosk:!:1::::::")),
		"etc/group":  []byte(lines("alice:x:1000:", "kiosk:x:1003:", "wheel:x:10:alice,kiosk,ghost")),
		"etc/subuid": []byte(""),
	}
	sel := selectAccounts(src, DefaultRanges)
	want := map[string][]byte{
		"etc/passwd": []byte(lines("alice:x:1000:1000::/home/alice:/bin/bash", "kiosk:x:1003:1003::/home/kiosk:/usr/sbin/nologin", "dave:x:1004:1004::/home/dave:/bin/sh")),
		"etc/shadow": []byte(lines("alice:!:1::::::", "kiosk:!:1::::::")),
		"etc/group":  []byte(lines("alice:x:1000:", "kiosk:x:1003:", "wheel:x:10:alice,kiosk")),
		"etc/subuid": nil,
	}
	for f, w := range want {
		if got, ok := sel.files[f]; !ok || string(got) != string(w) {
			t.Errorf("%s:\n%q\nwant\n%q", f, got, w)
		}
	}
	for _, f := range []string{"etc/gshadow", "etc/subgid"} {
		if _, ok := sel.files[f]; ok {
			t.Errorf("%s is made, but the machine has none", f)
		}
	}
	var got []string
	for _, a := range sel.accounts {
		s := a.Kind + " " + a.Name + ": " + a.Why
		if a.Taken {
			s = "took " + s
		}
		got = append(got, s)
	}
	wantAccts := []string{
		"took user alice: ",
		"user alice: etc/passwd line 4: a second line for alice (the first, line 3, is the one the system uses)",
		"user broken: etc/passwd line 5: 6 fields, want 7",
		`user carol: etc/passwd line 6: field 3 ("10o2") is not a number`,
		"user +nis: etc/passwd line 7: a NIS compat line",
		"took user kiosk: its shell /usr/sbin/nologin allows no login, but its uid is in the human range",
		"took user dave: it has no line in etc/shadow; its primary gid 1004 has no line in etc/group",
		"took group alice: primary group of alice",
		"took group kiosk: primary group of kiosk",
		"took group wheel: members alice,kiosk",
	}
	if !reflect.DeepEqual(got, wantAccts) {
		t.Errorf("accounts:\n got %q\nwant %q", got, wantAccts)
	}
}
