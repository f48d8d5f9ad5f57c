package toplayer

import (
	"errors"
	"strings"
	"testing"
)

const (
	pwRoot      = "root:x:0:0:root:/root:/bin/bash"
	pwDaemon    = "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin"
	pwBus       = "messagebus:x:101:101::/nonexistent:/usr/sbin/nologin"
	pwNetworkd  = "systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin"
	pwAlice     = "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash"
	pwRootZsh   = "root:x:0:0:root:/root:/bin/zsh"
	shRootImage = "root:*:19000:0:99999:7:::"
	shRootTop   = "root:$6$salt$hash:19500:0:99999:7:::"
	shDaemon    = "daemon:*:19000:0:99999:7:::"
	shAlice     = "alice:$6$s$h:19500:0:99999:7:::"
)

func lines(ls ...string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// TestMergeAccounts is the table of mergeAccounts: the image's file, the
// top layer's, and what the new root gets.
func TestMergeAccounts(t *testing.T) {
	cases := []struct {
		name       string
		kind       string
		image, top string
		want       string
		// wantWarn holds, for each warning expected (in order), words it
		// must contain.
		wantWarn [][]string
		// wantErr is set when the top layer's file must be refused, with
		// the line number the error names.
		wantErr     bool
		wantErrLine int
		wantErrText string
	}{
		{name: "only the image", kind: "passwd",
			image: lines(pwRoot, pwDaemon), top: "",
			want: lines(pwRoot, pwDaemon)},
		{name: "only the top layer", kind: "passwd",
			image: "", top: lines(pwAlice),
			want: lines(pwAlice)},
		{name: "overlap: the top layer's line wins in the image's place, new names follow", kind: "passwd",
			image: lines(pwRoot, pwDaemon, pwBus), top: lines(pwAlice, pwRootZsh),
			want: lines(pwRootZsh, pwDaemon, pwBus, pwAlice)},
		{name: "a system user the new image added stays", kind: "passwd",
			image: lines(pwRoot, pwDaemon, pwNetworkd, pwBus), top: lines(pwRoot, pwDaemon, pwBus, pwAlice),
			want: lines(pwRoot, pwDaemon, pwNetworkd, pwBus, pwAlice)},
		{name: "shadow keyed by name", kind: "shadow",
			image: lines(shRootImage, shDaemon), top: lines(shRootTop, shAlice),
			want: lines(shRootTop, shDaemon, shAlice)},
		{name: "group member lists are joined, the top layer's other fields win", kind: "group",
			image: lines("sudo:x:27:", "audio:x:29:pulse", "users:x:100:", "video:*:44:"),
			top:   lines("audio:x:29:alice", "sudo:x:27:alice,bob", "alice:x:1000:", "video:x:44:"),
			want:  lines("sudo:x:27:alice,bob", "audio:x:29:pulse,alice", "users:x:100:", "video:x:44:", "alice:x:1000:")},
		{name: "group members joined without duplicates, in order", kind: "group",
			image: lines("audio:x:29:pulse,alice"), top: lines("audio:x:29:alice,bob,alice,,carol"),
			want: lines("audio:x:29:pulse,alice,bob,carol")},
		{name: "gshadow admins and members are joined", kind: "gshadow",
			image: lines("audio:!:admin1:pulse", "sudo:*::"),
			top:   lines("audio:!:alice,admin1:alice", "sudo:!::alice"),
			want:  lines("audio:!:admin1,alice:pulse,alice", "sudo:!::alice")},
		{name: "uid taken by another image user: warning, the top layer's line stays", kind: "passwd",
			image: lines(pwRoot, "bob:x:1000:1000::/home/bob:/bin/sh"), top: lines(pwAlice),
			want:     lines(pwRoot, "bob:x:1000:1000::/home/bob:/bin/sh", pwAlice),
			wantWarn: [][]string{{"etc/passwd", "alice", "bob", "uid 1000"}}},
		{name: "gid taken by another image group: warning", kind: "group",
			image: lines("render:x:105:"), top: lines("alice:x:105:"),
			want:     lines("render:x:105:", "alice:x:105:"),
			wantWarn: [][]string{{"etc/group", "alice", "render", "gid 105"}}},
		{name: "a uid the top layer also moves away is no conflict; the move is", kind: "passwd",
			image:    lines("bob:x:1000:1000::/home/bob:/bin/sh"),
			top:      lines("bob:x:1001:1000::/home/bob:/bin/sh", pwAlice),
			want:     lines("bob:x:1001:1000::/home/bob:/bin/sh", pwAlice),
			wantWarn: [][]string{{"etc/passwd", "bob", "uid 1001", "1000"}}},
		{name: "a system user whose uid differs from the image's: warning", kind: "passwd",
			image: lines(pwBus), top: lines("messagebus:x:102:102::/nonexistent:/usr/sbin/nologin"),
			want:     lines("messagebus:x:102:102::/nonexistent:/usr/sbin/nologin"),
			wantWarn: [][]string{{"etc/passwd", "messagebus", "uid 102", "101"}}},
		{name: "two top-layer names sharing a uid among themselves are not warned about", kind: "passwd",
			image: lines(pwRoot), top: lines(pwRoot, "toor:x:0:0::/root:/bin/sh"),
			want: lines(pwRoot, "toor:x:0:0::/root:/bin/sh")},
		{name: "comments and blank lines of the image are kept, the top layer's dropped", kind: "passwd",
			image: lines("# system accounts", pwRoot, "", "  # indented", pwDaemon),
			top:   lines("# mine", pwAlice, "", "   "),
			want:  lines("# system accounts", pwRoot, "", "  # indented", pwDaemon, pwAlice)},
		{name: "malformed image lines are kept verbatim", kind: "passwd",
			image: lines(pwRoot, "broken line", "half:x:5", ":x:7:7::/:/bin/sh"), top: lines(pwAlice),
			want: lines(pwRoot, "broken line", "half:x:5", ":x:7:7::/:/bin/sh", pwAlice)},
		{name: "a malformed image line is replaced by the top layer's line of that name", kind: "passwd",
			image: lines(pwRoot, "half:x:5"), top: lines("half:x:5:5::/:/bin/sh"),
			want: lines(pwRoot, "half:x:5:5::/:/bin/sh")},
		{name: "image duplicates of a name the top layer sets collapse into one line, members joined", kind: "group",
			image: lines("audio:x:29:pulse", "users:x:100:", "audio:x:29:mpd"), top: lines("audio:x:29:alice"),
			want: lines("audio:x:29:pulse,mpd,alice", "users:x:100:")},
		{name: "image duplicates of a name the top layer does not set are kept", kind: "passwd",
			image: lines(pwRoot, pwRoot), top: lines(pwAlice),
			want: lines(pwRoot, pwRoot, pwAlice)},
		{name: "top layer: wrong field count is an error naming file and line", kind: "passwd",
			image: lines(pwRoot), top: lines(pwAlice, "bob:x:1001:1001::/home/bob"),
			wantErr: true, wantErrLine: 2, wantErrText: "etc/passwd line 2"},
		{name: "top layer: empty name is an error", kind: "group",
			image: lines("root:x:0:"), top: lines(":x:1000:"),
			wantErr: true, wantErrLine: 1, wantErrText: "etc/group line 1"},
		{name: "top layer: a name with white space is an error", kind: "passwd",
			top: lines(" alice:x:1000:1000::/home/alice:/bin/bash"), wantErr: true, wantErrLine: 1},
		{name: "top layer: a uid that is not a number is an error", kind: "passwd",
			top: lines("alice:x::1000::/home/alice:/bin/bash"), wantErr: true, wantErrLine: 1, wantErrText: "uid"},
		{name: "top layer: a gid that is not a number is an error", kind: "group",
			top: lines("alice:x:abc:"), wantErr: true, wantErrLine: 1, wantErrText: "gid"},
		{name: "top layer: a name twice is an error", kind: "shadow",
			top: lines(shAlice, shRootTop, shAlice), wantErr: true, wantErrLine: 3, wantErrText: "line 1"},
		{name: "top layer: CRLF line endings are an error", kind: "passwd",
			image: lines(pwRoot), top: pwAlice + "\r\n",
			wantErr: true, wantErrLine: 1, wantErrText: "carriage return"},
		{name: "image CRLF lines are kept verbatim", kind: "passwd",
			image: pwRoot + "\r\n" + pwDaemon + "\r\n", top: lines(pwAlice),
			want: pwRoot + "\r\n" + pwDaemon + "\r\n" + lines(pwAlice)},
		{name: "image without a final newline: one is added before the top layer's lines", kind: "passwd",
			image: pwRoot, top: lines(pwAlice),
			want: lines(pwRoot, pwAlice)},
		{name: "top layer without a final newline", kind: "passwd",
			image: lines(pwRoot), top: pwAlice,
			want: lines(pwRoot, pwAlice)},
		{name: "the result always ends in a newline", kind: "passwd",
			image: pwRoot, top: "",
			want: lines(pwRoot)},
		{name: "subuid keyed by name", kind: "subuid",
			image: lines("bob:100000:65536", "carol:165536:65536"), top: lines("alice:231072:65536", "bob:300000:65536"),
			want: lines("bob:300000:65536", "carol:165536:65536", "alice:231072:65536")},
		{name: "subgid: a name may have several ranges; the top layer's replace the image's in place", kind: "subgid",
			image: lines("bob:100000:65536", "carol:165536:65536", "bob:400000:10"),
			top:   lines("bob:500000:65536", "bob:600000:1", "bob:700000:2", "alice:1:2", "alice:3:4"),
			want:  lines("bob:500000:65536", "carol:165536:65536", "bob:600000:1", "bob:700000:2", "alice:1:2", "alice:3:4")},
		{name: "top layer: a subuid count that is not a number is an error", kind: "subuid",
			top: lines("alice:100000:lots"), wantErr: true, wantErrLine: 1},
		{name: "shadow's numeric fields may be empty", kind: "shadow",
			image: lines(shRootImage), top: lines("alice:!:::::::"),
			want: lines(shRootImage, "alice:!:::::::")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, warns, err := mergeAccounts(c.kind, []byte(c.image), []byte(c.top))
			if c.wantErr {
				var le *LineError
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want a *LineError", err)
				}
				if le.File != "etc/"+c.kind || le.Line != c.wantErrLine {
					t.Errorf("error names %s line %d, want etc/%s line %d", le.File, le.Line, c.kind, c.wantErrLine)
				}
				if !strings.Contains(err.Error(), c.wantErrText) {
					t.Errorf("error %q does not say %q", err, c.wantErrText)
				}
				return
			}
			if err != nil {
				t.Fatalf("mergeAccounts: %v", err)
			}
			if string(got) != c.want {
				t.Errorf("merged:\n%s\nwant:\n%s", got, c.want)
			}
			if len(warns) != len(c.wantWarn) {
				t.Fatalf("warnings %q, want %d", warns, len(c.wantWarn))
			}
			for i, words := range c.wantWarn {
				for _, w := range words {
					if !strings.Contains(warns[i], w) {
						t.Errorf("warning %q does not say %q", warns[i], w)
					}
				}
			}
		})
	}
}

func TestMergeAccountsUnknownKind(t *testing.T) {
	if _, _, err := mergeAccounts("hosts", nil, nil); err == nil {
		t.Error("mergeAccounts(hosts) succeeded, want an error")
	}
}

// TestAccountKinds is the table of the six account databases: field
// count, id field and joined fields (STYLE 17: every option table has a
// table test).
func TestAccountKinds(t *testing.T) {
	want := map[string]struct {
		fields int
		id     int
		join   []int
		multi  bool
	}{
		"passwd":  {7, 2, nil, false},
		"group":   {4, 2, []int{3}, false},
		"shadow":  {9, -1, nil, false},
		"gshadow": {4, -1, []int{2, 3}, false},
		"subuid":  {3, -1, nil, true},
		"subgid":  {3, -1, nil, true},
	}
	if len(accountKinds) != len(want) {
		t.Errorf("%d account kinds, want %d", len(accountKinds), len(want))
	}
	for name, w := range want {
		k := accountKinds[name]
		if k == nil {
			t.Errorf("no account kind %s", name)
			continue
		}
		if k.fields != w.fields || k.id != w.id || k.multi != w.multi || !equalInts(k.join, w.join) {
			t.Errorf("%s: fields %d id %d join %v multi %v, want %+v", name, k.fields, k.id, k.join, k.multi, w)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzMergeAccounts: mergeAccounts never panics; every name of the top
// layer appears in the result as often as in the top layer, every other
// name of the image as often as in the image; the image's lines for
// names the top layer does not set stay, verbatim and in order; and
// merging a file with itself gives the file back (with a final newline).
func FuzzMergeAccounts(f *testing.F) {
	f.Add(uint8(0), []byte(lines(pwRoot, pwDaemon)), []byte(lines(pwAlice, pwRootZsh)))
	f.Add(uint8(1), []byte(lines("audio:x:29:pulse", "users:x:100:")), []byte(lines("audio:x:29:alice,pulse")))
	f.Add(uint8(2), []byte(lines(shRootImage, "# c", "", "bad")), []byte(lines(shAlice)))
	f.Add(uint8(3), []byte(lines("audio:!:a:b,c")), []byte(lines("audio:!:c:d")))
	f.Add(uint8(4), []byte(lines("bob:1:2", "carol:3:4", "bob:5:6")), []byte(lines("bob:7:8")))
	f.Add(uint8(0), []byte(pwRoot+"\r\n"+" half:x"), []byte(pwRoot))
	kinds := []string{"passwd", "group", "shadow", "gshadow", "subuid", "subgid"}
	f.Fuzz(func(t *testing.T, k uint8, image, top []byte) {
		kind := kinds[int(k)%len(kinds)]
		got, _, err := mergeAccounts(kind, image, top)
		if err == nil {
			checkMergeInvariants(t, kind, image, top, got)
		}
		self, _, err := mergeAccounts(kind, image, image)
		if err != nil {
			return // the image's file would be refused as a top layer's
		}
		want := string(image)
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if string(self) != want {
			t.Errorf("merging %q with itself gave %q", image, self)
		}
	})
}

func checkMergeInvariants(t *testing.T, kind string, image, top, got []byte) {
	k := accountKinds[kind]
	count := func(data []byte) map[string]int {
		n := map[string]int{}
		for _, l := range parseAccounts(k, data) {
			if l.name != "" {
				n[l.name]++
			}
		}
		return n
	}
	inImage, inTop, inGot := count(image), count(top), count(got)
	for name, n := range inTop {
		if inGot[name] != n {
			t.Errorf("top-layer name %q appears %d times in the result, %d in the top layer", name, inGot[name], n)
		}
	}
	for name, n := range inImage {
		if _, ok := inTop[name]; !ok && inGot[name] != n {
			t.Errorf("image name %q appears %d times in the result, %d in the image", name, inGot[name], n)
		}
	}
	for name := range inGot {
		if inImage[name] == 0 && inTop[name] == 0 {
			t.Errorf("result has name %q, which neither input has", name)
		}
	}
	// The image's lines the top layer does not touch, in order.
	untouched := func(data []byte) []string {
		var out []string
		for _, l := range parseAccounts(k, data) {
			if _, ok := inTop[l.name]; !ok || l.name == "" {
				out = append(out, l.raw)
			}
		}
		return out
	}
	img, res := untouched(image), untouched(got)
	if strings.Join(res, "\n") != strings.Join(img, "\n") {
		t.Errorf("the image's own lines are not kept in order:\nimage %q\nresult %q", img, res)
	}
	if len(got) > 0 && got[len(got)-1] != '\n' {
		t.Errorf("result %q does not end in a newline", got)
	}
}
