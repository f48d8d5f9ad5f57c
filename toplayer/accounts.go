package toplayer

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// accountKind describes one colon-separated account database of etc/.
type accountKind struct {
	file   string // "etc/passwd", for messages
	fields int    // fields in a well-formed line
	format string // the fields' names, for messages
	id     int    // index of the numeric id field (uid, gid) checked for conflicts; -1: none
	idName string
	// numeric are indexes of fields that must be decimal numbers in a
	// top-layer line.
	numeric []int
	// join are indexes of comma-separated member lists joined with the
	// image's rather than replaced.
	join []int
	// multi: a name may have several lines (subordinate id ranges), which
	// the top layer's lines of that name replace as a set.
	multi bool
}

// accountKinds are the databases Apply merges, by their name in etc/.
// Their formats are passwd(5), group(5), shadow(5), gshadow(5),
// subuid(5) and subgid(5).
var accountKinds = map[string]*accountKind{
	"passwd":  {file: "etc/passwd", fields: 7, format: "name:password:uid:gid:gecos:home:shell", id: 2, idName: "uid", numeric: []int{2, 3}},
	"group":   {file: "etc/group", fields: 4, format: "name:password:gid:members", id: 2, idName: "gid", numeric: []int{2}, join: []int{3}},
	"shadow":  {file: "etc/shadow", fields: 9, format: "name:password:lastchange:min:max:warn:inactive:expire:reserved", id: -1},
	"gshadow": {file: "etc/gshadow", fields: 4, format: "name:password:admins:members", id: -1, join: []int{2, 3}},
	"subuid":  {file: "etc/subuid", fields: 3, format: "name:first:count", id: -1, numeric: []int{1, 2}, multi: true},
	"subgid":  {file: "etc/subgid", fields: 3, format: "name:first:count", id: -1, numeric: []int{1, 2}, multi: true},
}

// shadowKinds are never left readable by others: they hold password
// hashes.
var shadowKinds = map[string]bool{"shadow": true, "gshadow": true}

// accountLine is one line of an account database, without its newline.
type accountLine struct {
	raw  string
	name string // the first field (leading blanks dropped, as glibc does); "" for blank lines and comments
	// fields is the line split at colons, nil for blank lines and
	// comments.
	fields []string
	bad    string // why the line is malformed, "" if it is not
}

// parseAccounts splits data into lines of the database k and says which
// are malformed. It never fails: what to do with a malformed line is the
// caller's choice. A line is blank or a comment when, after leading white
// space, it is empty or starts with '#': glibc's files backend skips
// those.
func parseAccounts(k *accountKind, data []byte) []accountLine {
	if len(data) == 0 {
		return nil
	}
	var out []accountLine
	for _, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		out = append(out, parseAccountLine(k, raw))
	}
	return out
}

func parseAccountLine(k *accountKind, raw string) accountLine {
	l := accountLine{raw: raw}
	trimmed := strings.TrimLeft(raw, " \t")
	if strings.TrimSpace(trimmed) == "" || strings.HasPrefix(trimmed, "#") {
		return l
	}
	l.fields = strings.Split(raw, ":")
	l.name = strings.TrimLeft(l.fields[0], " \t")
	switch {
	case strings.ContainsAny(raw, "\r"):
		l.bad = "it holds a carriage return (CRLF line endings?); save the file with LF line endings"
	case strings.ContainsRune(raw, 0):
		l.bad = "it holds a NUL byte"
	case len(l.fields) != k.fields:
		l.bad = fmt.Sprintf("%d fields, want %d (%s)", len(l.fields), k.fields, k.format)
	case l.fields[0] == "":
		l.bad = "empty name"
	case strings.ContainsAny(l.fields[0], " \t\v\f"):
		l.bad = fmt.Sprintf("name %q holds white space", l.fields[0])
	default:
		names := strings.Split(k.format, ":")
		for _, i := range k.numeric {
			if _, err := strconv.ParseUint(l.fields[i], 10, 32); err != nil {
				l.bad = fmt.Sprintf("%s %q is not a number", names[i], l.fields[i])
				break
			}
		}
	}
	return l
}

// LineError is a malformed line in one of the top layer's account
// databases. Apply refuses the file rather than drop the line: it may be
// someone's account.
type LineError struct {
	File   string // "etc/passwd"
	Line   int    // 1-based
	Reason string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Reason)
}

// mergeAccounts merges the top layer's account database top into the
// image's, image, both the content of the file etc/KIND (kind is a key of
// accountKinds):
//
//   - The image's lines stay in its order: comments, blank lines and
//     malformed lines verbatim. A line whose name (first field) the top
//     layer also has is replaced by the top layer's line, in place; other
//     lines of that name in the image are dropped (for subuid and subgid,
//     whose names may have several ranges, the top layer's lines replace
//     the image's one by one, extra ones going after the image's last).
//   - Member lists (group's members, gshadow's admins and members) are
//     the image's followed by the top layer's not already in them.
//   - The top layer's names the image lacks follow, in the top layer's
//     order. Its comments and blank lines are dropped: they belong to no
//     entry and have no place in the image's order.
//   - A malformed top-layer line, or a name on two of its lines (but for
//     subuid and subgid), is a *LineError.
//   - Warnings say when a top-layer line gives a name a uid or gid another
//     name of the image has (and the top layer does not change), or one
//     other than the image gives that same name: the image's files owned
//     by that id change hands.
//
// Every line of the result ends in a newline.
func mergeAccounts(kind string, image, top []byte) (merged []byte, warnings []string, err error) {
	k := accountKinds[kind]
	if k == nil {
		return nil, nil, fmt.Errorf("etc/%s is not an account database", kind)
	}
	topLines := parseAccounts(k, top)
	topBy := map[string][]int{} // name -> indexes in topLines
	var topOrder []string
	for i, l := range topLines {
		if l.fields == nil {
			continue
		}
		if l.bad != "" {
			return nil, nil, &LineError{File: k.file, Line: i + 1, Reason: l.bad}
		}
		prev, seen := topBy[l.name]
		if seen && !k.multi {
			return nil, nil, &LineError{File: k.file, Line: i + 1, Reason: fmt.Sprintf("%s is already on line %d", l.name, prev[0]+1)}
		}
		if !seen {
			topOrder = append(topOrder, l.name)
		}
		topBy[l.name] = append(topBy[l.name], i)
	}

	imgLines := parseAccounts(k, image)
	imgBy := map[string][]int{}
	for i, l := range imgLines {
		if l.name != "" {
			imgBy[l.name] = append(imgBy[l.name], i)
		}
	}
	warnings = idWarnings(k, imgLines, topLines, topBy, topOrder)

	var out bytes.Buffer
	emitted := map[string]int{} // image lines of a top-layer name seen so far
	for i, l := range imgLines {
		tops, ok := topBy[l.name]
		if l.name == "" || !ok {
			out.WriteString(l.raw)
			out.WriteByte('\n')
			continue
		}
		n := emitted[l.name]
		emitted[l.name] = n + 1
		switch {
		case k.multi:
			if n < len(tops) {
				writeLine(&out, topLines[tops[n]].raw)
			}
			if last := imgBy[l.name]; i == last[len(last)-1] {
				for _, j := range tops[min(n+1, len(tops)):] {
					writeLine(&out, topLines[j].raw)
				}
			}
		case n == 0:
			writeLine(&out, joinMembers(k, topLines[tops[0]], imgLines, imgBy[l.name]))
		}
	}
	for _, name := range topOrder {
		if _, ok := imgBy[name]; ok {
			continue
		}
		for _, j := range topBy[name] {
			writeLine(&out, topLines[j].raw)
		}
	}
	return out.Bytes(), warnings, nil
}

func writeLine(b *bytes.Buffer, s string) {
	b.WriteString(s)
	b.WriteByte('\n')
}

// joinMembers returns the top layer's line top with each member-list
// field joined: the first well-formed image line's list verbatim, then
// the members of the name's other image lines and of top not already in
// it, in order.
func joinMembers(k *accountKind, top accountLine, image []accountLine, idx []int) string {
	if len(k.join) == 0 {
		return top.raw
	}
	var valid []accountLine
	for _, i := range idx {
		if image[i].bad == "" {
			valid = append(valid, image[i])
		}
	}
	if len(valid) == 0 {
		return top.raw
	}
	fields := append([]string(nil), top.fields...)
	for _, f := range k.join {
		list := valid[0].fields[f]
		seen := map[string]bool{}
		for _, m := range strings.Split(list, ",") {
			seen[m] = true
		}
		add := func(members string) {
			for _, m := range strings.Split(members, ",") {
				if m == "" || seen[m] {
					continue
				}
				seen[m] = true
				if list != "" {
					list += ","
				}
				list += m
			}
		}
		for _, l := range valid[1:] {
			add(l.fields[f])
		}
		add(top.fields[f])
		fields[f] = list
	}
	return strings.Join(fields, ":")
}

// idWarnings lists the top layer's names whose id is another image name's
// (one the top layer leaves alone), and those whose id differs from the
// one the image gives them.
func idWarnings(k *accountKind, image, top []accountLine, topBy map[string][]int, topOrder []string) []string {
	if k.id < 0 {
		return nil
	}
	owner := map[string]string{} // id -> first image name with it, among those the top layer does not set
	imgID := map[string]string{} // name -> id in the image's first well-formed line of it
	for _, l := range image {
		if l.name == "" || l.bad != "" {
			continue
		}
		id := l.fields[k.id]
		if _, ok := imgID[l.name]; !ok {
			imgID[l.name] = id
		}
		if _, set := topBy[l.name]; !set {
			if _, ok := owner[id]; !ok {
				owner[id] = l.name
			}
		}
	}
	var warns []string
	for _, name := range topOrder {
		id := top[topBy[name][0]].fields[k.id]
		if other, ok := owner[id]; ok {
			warns = append(warns, fmt.Sprintf("%s: the top layer gives %s %s %s, which the image gives to %s; both now have it",
				k.file, name, k.idName, id, other))
		}
		if old, ok := imgID[name]; ok && old != id {
			warns = append(warns, fmt.Sprintf("%s: the top layer gives %s %s %s, the image %s; what the image owns as %s is no longer %s's",
				k.file, name, k.idName, id, old, old, name))
		}
	}
	return warns
}

// sortedKinds lists accountKinds' names, for messages.
func sortedKinds() []string {
	names := make([]string, 0, len(accountKinds))
	for n := range accountKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
