package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Account files, in the order the report lists them. Their formats are
// passwd(5), group(5), shadow(5), gshadow(5), subuid(5) and subgid(5); the
// top layer merges each into the image's by name (package toplayer), so
// what is written here must parse the way the merge parses it: a line the
// merge refuses would stop the boot.
var accountFiles = []string{"etc/passwd", "etc/shadow", "etc/group", "etc/gshadow", "etc/subuid", "etc/subgid"}

// fieldCount is each account file's number of fields per line, and
// numeric the indexes of fields that must be decimal numbers (as the
// merge checks them).
var (
	fieldCount = map[string]int{"etc/passwd": 7, "etc/group": 4, "etc/shadow": 9, "etc/gshadow": 4, "etc/subuid": 3, "etc/subgid": 3}
	numeric    = map[string][]int{"etc/passwd": {2, 3}, "etc/group": {2}, "etc/subuid": {1, 2}, "etc/subgid": {1, 2}}
)

// Ranges are the ids useradd gives human users and their groups:
// UID_MIN..UID_MAX and GID_MIN..GID_MAX of login.defs(5), inclusive.
type Ranges struct{ UIDMin, UIDMax, GIDMin, GIDMax uint64 }

// DefaultRanges are shadow-utils' defaults when etc/login.defs does not
// set them.
var DefaultRanges = Ranges{UIDMin: 1000, UIDMax: 60000, GIDMin: 1000, GIDMax: 60000}

// ParseLoginDefs returns the ranges etc/login.defs (its content) sets,
// the defaults for those it does not. Like shadow-utils, it takes the
// first word of a line as the key and the second as the value, and
// ignores a value that is not a number.
func ParseLoginDefs(data []byte) Ranges {
	r := DefaultRanges
	set := map[string]*uint64{"UID_MIN": &r.UIDMin, "UID_MAX": &r.UIDMax, "GID_MIN": &r.GIDMin, "GID_MAX": &r.GIDMax}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || seen[f[0]] {
			continue
		}
		if p, ok := set[f[0]]; ok {
			if v, err := strconv.ParseUint(f[1], 0, 32); err == nil {
				*p = v
				seen[f[0]] = true
			}
		}
	}
	return r
}

// line is one account line.
type line struct {
	n      int // 1-based line number
	raw    string
	fields []string
	bad    string // why the line is not taken whatever its name, "" for a well-formed one
}

// parseLines splits an account file into its lines, blank lines and
// comments dropped. A line is bad when the merge would refuse it, when it
// is a second line of a name (but in subuid and subgid, where a name may
// have several ranges), or a NIS compat line (+name, -name), which has no
// meaning in a top layer.
func parseLines(file string, data []byte) []line {
	var out []line
	first := map[string]int{}
	multi := file == "etc/subuid" || file == "etc/subgid"
	for i, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		n := i + 1
		trimmed := strings.TrimLeft(raw, " \t")
		if strings.TrimSpace(trimmed) == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := strings.Split(raw, ":")
		name := strings.TrimLeft(fields[0], " \t")
		why := ""
		switch {
		case strings.ContainsAny(raw, "\r\x00"):
			why = "it holds a carriage return or a NUL byte"
		case len(fields) != fieldCount[file]:
			why = fmt.Sprintf("%d fields, want %d", len(fields), fieldCount[file])
		case name == "":
			why = "empty name"
		case strings.HasPrefix(name, "+") || strings.HasPrefix(name, "-"):
			why = "a NIS compat line"
		case strings.ContainsAny(fields[0], " \t\v\f"):
			why = "the name holds white space"
		}
		for _, f := range numeric[file] {
			if why != "" {
				break
			}
			if _, err := strconv.ParseUint(fields[f], 10, 32); err != nil {
				why = fmt.Sprintf("field %d (%q) is not a number", f+1, fields[f])
			}
		}
		if p, dup := first[name]; why == "" && dup && !multi {
			why = fmt.Sprintf("a second line for %s (the first, line %d, is the one the system uses)", name, p)
		}
		if why == "" {
			if _, ok := first[name]; !ok {
				first[name] = n
			}
			fields[0] = name
		}
		out = append(out, line{n: n, raw: raw, fields: fields, bad: why})
	}
	return out
}

func id(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 32)
	return v
}

// Account is the fate of one user or group of the machine.
type Account struct {
	Kind  string // "user" or "group"
	Name  string // "" for a line that does not parse
	ID    uint64
	Taken bool
	// Bad: its line does not parse, repeats a name or is a NIS compat
	// line (Why says which line and why); ID is not known.
	Bad bool
	// Why says why it was left out; for a taken account, a note ("" when
	// there is nothing to say).
	Why string
}

// selected is what selectAccounts made of the machine's account files.
type selected struct {
	files    map[string][]byte // etc/passwd -> content to write; only files the machine has
	accounts []Account
	// systemGroups counts the groups below GID_MIN left out without a
	// line each: every system has dozens, and none is the machine's own.
	systemGroups int
}

// selectAccounts picks the machine's human users from src (account file
// -> content; a missing key is a file the machine lacks) and the lines
// that go with them:
//
//   - passwd: users with UID_MIN <= uid <= UID_MAX. Everything else is a
//     system account (below UID_MIN) or outside useradd's range (above
//     UID_MAX: nobody, 65534) and left out with a line saying which.
//     A human-range user whose shell is nologin or false is still taken
//     (and said so): it owns files by its uid in the range the image's
//     packages never use, and the machine's files keep that owner.
//   - shadow: the taken users' lines.
//   - group: the groups whose gid is a taken user's primary gid, and
//     every group that lists a taken user as a member, with the member
//     list reduced to taken users: the merge joins member lists, so the
//     image's members of a system group stay and the machine's humans
//     are added.
//   - gshadow: the taken groups' lines, admins and members reduced alike.
//   - subuid, subgid: the ranges of taken users (by name or by uid).
//
// Every file the machine has is regenerated whole, even when nothing of
// it is taken (then empty), so a user deleted on the machine leaves the
// top layer too.
func selectAccounts(src map[string][]byte, r Ranges) *selected {
	s := &selected{files: map[string][]byte{}}
	users := map[string]bool{}
	uids := map[string]bool{}        // decimal uids of taken users, as subuid may name them
	primary := map[uint64][]string{} // gid -> taken users with it as primary group
	var order []string

	// bad reports l if it is a bad line of file.
	bad := func(kind, file string, l line) bool {
		if l.bad != "" {
			s.accounts = append(s.accounts, Account{Kind: kind, Bad: true, Name: strings.TrimLeft(l.fields[0], " \t"), Why: fmt.Sprintf("%s line %d: %s", file, l.n, l.bad)})
		}
		return l.bad != ""
	}
	emit := func(file string, lines []string) {
		if _, ok := src[file]; !ok {
			return
		}
		var b bytes.Buffer
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		s.files[file] = b.Bytes()
	}

	var passwd []string
	for _, l := range parseLines("etc/passwd", src["etc/passwd"]) {
		if bad("user", "etc/passwd", l) {
			continue
		}
		a := Account{Kind: "user", Name: l.fields[0], ID: id(l.fields[2])}
		switch {
		case a.ID < r.UIDMin:
			a.Why = fmt.Sprintf("system account (uid below UID_MIN %d)", r.UIDMin)
		case a.ID > r.UIDMax:
			a.Why = fmt.Sprintf("uid above UID_MAX %d: not a user useradd made (nobody is 65534)", r.UIDMax)
		default:
			a.Taken = true
			if sh := l.fields[6]; strings.HasSuffix(sh, "/nologin") || strings.HasSuffix(sh, "/false") {
				a.Why = fmt.Sprintf("its shell %s allows no login, but its uid is in the human range", sh)
			}
			users[a.Name] = true
			uids[l.fields[2]] = true
			gid := id(l.fields[3])
			primary[gid] = append(primary[gid], a.Name)
			order = append(order, a.Name)
			passwd = append(passwd, l.raw)
		}
		s.accounts = append(s.accounts, a)
	}
	emit("etc/passwd", passwd)

	var shadow []string
	inShadow := map[string]bool{}
	for _, l := range parseLines("etc/shadow", src["etc/shadow"]) {
		if bad("user", "etc/shadow", l) {
			continue
		}
		if users[l.fields[0]] {
			shadow = append(shadow, l.raw)
			inShadow[l.fields[0]] = true
		}
	}
	emit("etc/shadow", shadow)
	if _, ok := src["etc/shadow"]; ok {
		for _, u := range order {
			if !inShadow[u] {
				s.note("user", u, "it has no line in etc/shadow")
			}
		}
	}

	var group []string
	groups := map[string]bool{}
	gidSeen := map[uint64]bool{}
	for _, l := range parseLines("etc/group", src["etc/group"]) {
		if bad("group", "etc/group", l) {
			continue
		}
		gid := id(l.fields[2])
		members := keep(l.fields[3], users)
		a := Account{Kind: "group", Name: l.fields[0], ID: gid}
		var why []string
		if p := primary[gid]; len(p) > 0 && !gidSeen[gid] {
			why = append(why, "primary group of "+strings.Join(p, ", "))
			gidSeen[gid] = true
		}
		if members != "" {
			why = append(why, "members "+members)
		}
		switch {
		case len(why) > 0:
			a.Taken = true
			a.Why = strings.Join(why, "; ")
			groups[a.Name] = true
			l.fields[3] = members
			group = append(group, strings.Join(l.fields, ":"))
		case gid < r.GIDMin || gid > r.GIDMax:
			s.systemGroups++
			continue
		default:
			a.Why = "no captured user has it as primary group or is a member"
		}
		s.accounts = append(s.accounts, a)
	}
	emit("etc/group", group)
	if _, ok := src["etc/group"]; ok {
		for gid, us := range primary {
			if !gidSeen[gid] {
				for _, u := range us {
					s.note("user", u, fmt.Sprintf("its primary gid %d has no line in etc/group", gid))
				}
			}
		}
	}

	var gshadow []string
	for _, l := range parseLines("etc/gshadow", src["etc/gshadow"]) {
		if bad("group", "etc/gshadow", l) {
			continue
		}
		if groups[l.fields[0]] {
			l.fields[2] = keep(l.fields[2], users)
			l.fields[3] = keep(l.fields[3], users)
			gshadow = append(gshadow, strings.Join(l.fields, ":"))
		}
	}
	emit("etc/gshadow", gshadow)

	for _, file := range []string{"etc/subuid", "etc/subgid"} {
		var sub []string
		for _, l := range parseLines(file, src[file]) {
			if bad("user", file, l) {
				continue
			}
			if users[l.fields[0]] || uids[l.fields[0]] {
				sub = append(sub, l.raw)
			}
		}
		emit(file, sub)
	}
	return s
}

// note adds why to the taken account name's note.
func (s *selected) note(kind, name, why string) {
	for i := range s.accounts {
		a := &s.accounts[i]
		if a.Kind == kind && a.Name == name && a.Taken {
			if a.Why != "" {
				a.Why += "; "
			}
			a.Why += why
			return
		}
	}
}

// keep returns the comma-separated list with only the names in set.
func keep(list string, set map[string]bool) string {
	var out []string
	for _, m := range strings.Split(list, ",") {
		if set[m] {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}
