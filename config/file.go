package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// FileError is a config file that cannot be read or parsed. Line and Column
// (1-based) are set when the problem has a position.
type FileError struct {
	File         string
	Line, Column int
	Err          error
	// Flag is the `dockroot initramfs` flag that bakes the file in:
	// "--config" when empty.
	Flag string
}

func (e *FileError) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	flag := e.Flag
	if flag == "" {
		flag = "--config"
	}
	return oneLine(fmt.Sprintf("%s: %v; fix the file (it is baked by `dockroot initramfs %s`) and rebuild the initramfs", where, e.Err, flag))
}

func (e *FileError) Unwrap() error { return e.Err }

// readLayer reads and parses name from fsys. A missing file gives (nil, nil).
func readLayer(fsys fs.FS, name string, parse func(string, []byte) (*layer, error)) (*layer, error) {
	if name == "" {
		return nil, nil
	}
	data, err := fs.ReadFile(fsys, strings.TrimPrefix(name, "/"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &FileError{File: name, Err: err}
	}
	return parse(name, data)
}

// jsonField is one member of a top-level JSON object.
type jsonField struct {
	name   string
	raw    json.RawMessage
	offset int64 // of the value
}

// readJSONObject reads data as one JSON object and returns its members in
// order. Errors carry the line and column.
func readJSONObject(file string, data []byte) ([]jsonField, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FileError{File: file, Err: errors.New("the file is empty; write {} for a file with no settings")}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	fail := func(off int64, err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err, off = errors.New("unexpected end of JSON input"), int64(len(data))
		}
		line, col := position(data, off)
		return &FileError{File: file, Line: line, Column: col, Err: err}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fail(dec.InputOffset(), err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(dec.InputOffset(), fmt.Errorf("want a JSON object {...} at the top level, got %v", describeToken(tok)))
	}
	var fields []jsonField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail(dec.InputOffset(), err)
		}
		name, _ := tok.(string) // the decoder only lets a string through as an object key
		off := valueOffset(data, dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fail(off, err)
		}
		fields = append(fields, jsonField{name: name, raw: raw, offset: off})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fail(dec.InputOffset(), err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("unexpected %v after the closing }", describeToken(tok))
		}
		return nil, fail(dec.InputOffset(), err)
	}
	return fields, nil
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(t))
	case string:
		return fmt.Sprintf("the string %q", t)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// valueOffset skips the ':' and whitespace after a key, so positions point
// at the value itself.
func valueOffset(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n', ':':
			off++
			continue
		}
		break
	}
	return off
}

// position converts a byte offset to a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// parseDockrootJSON reads /etc/dockroot.json: an object whose fields are
// the "json" names of the option table plus "init_args". Unknown fields
// are warnings, so a file written for a newer dockroot still boots. null
// means "not set".
func parseDockrootJSON(file string, data []byte) (*layer, error) {
	fields, err := readJSONObject(file, data)
	if err != nil {
		return nil, err
	}
	l := &layer{source: file, settings: map[string]setting{}}
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.name] {
			l.warnings = append(l.warnings, fmt.Sprintf("%s: field %q appears more than once; the last one is used", file, f.name))
		}
		seen[f.name] = true
		o := optionByJSON(f.name)
		if o == nil && f.name != "init_args" {
			l.warnings = append(l.warnings, unknownFieldWarning(file, f.name))
			continue
		}
		if string(f.raw) == "null" {
			if o != nil {
				delete(l.settings, o.key)
			} else {
				l.initArgs, l.hasInitArgs = nil, false
			}
			continue
		}
		if o == nil { // init_args
			var args []string
			if err := json.Unmarshal(f.raw, &args); err != nil {
				return nil, fieldError(file, data, f, "a list of strings")
			}
			l.initArgs, l.hasInitArgs = args, true
			continue
		}
		s, err := jsonSetting(o.types, f.raw)
		if err != nil {
			return nil, fieldError(file, data, f, err.Error())
		}
		s.source = file
		l.settings[o.key] = s
	}
	return l, nil
}

func unknownFieldWarning(file, name string) string {
	var known []string
	for _, o := range options {
		if o.json != "" {
			known = append(known, o.json)
		}
	}
	known = append(known, "init_args")
	msg := fmt.Sprintf("%s: unknown field %q ignored", file, name)
	if best := closest(name, known); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return msg
}

// jsonSetting converts a JSON value into the command line's form: strings
// as they are, numbers as their text, true as a bare key, false as "0".
func jsonSetting(types jsonType, raw json.RawMessage) (setting, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return setting{}, err
	}
	switch v := v.(type) {
	case string:
		if types&jsonString != 0 {
			return setting{value: v}, nil
		}
	case json.Number:
		if types&jsonInt != 0 {
			return setting{value: v.String()}, nil
		}
	case []any:
		if types&jsonStringList != 0 {
			elems := make([]string, len(v))
			for i, e := range v {
				str, ok := e.(string)
				if !ok {
					return setting{}, errors.New(describeTypes(types))
				}
				if strings.Contains(str, ",") {
					return setting{}, errors.New("a list of paths without a comma in one (a comma would make two)")
				}
				elems[i] = str
			}
			return setting{value: strings.Join(elems, ",")}, nil
		}
	case bool:
		if types&jsonBool != 0 {
			if v {
				return setting{bare: true}, nil
			}
			return setting{value: "0"}, nil
		}
	}
	return setting{}, errors.New(describeTypes(types))
}

func describeTypes(t jsonType) string {
	var want []string
	if t&jsonString != 0 {
		want = append(want, "a string")
	}
	if t&jsonStringList != 0 {
		want = append(want, "a list of strings")
	}
	if t&jsonInt != 0 {
		want = append(want, "a whole number")
	}
	if t&jsonBool != 0 {
		want = append(want, "true or false")
	}
	return strings.Join(want, " or ")
}

func fieldError(file string, data []byte, f jsonField, want string) error {
	line, col := position(data, f.offset)
	got := string(f.raw)
	if len(got) > 40 {
		got = got[:40] + "..."
	}
	return &FileError{File: file, Line: line, Column: col,
		Err: fmt.Errorf("field %q must be %s, got %s", f.name, want, strings.Join(strings.Fields(got), " "))}
}

// parseDockerBtrfsJSON reads the ancestor's /etc/docker-btrfs.json,
// {"docker_image": "archlinux/base", "docker_tag": "latest"}, into
// docker_image. The tag is optional; a docker_image that already carries a
// tag or digest together with a docker_tag is ambiguous and refused.
func parseDockerBtrfsJSON(file string, data []byte) (l *layer, err error) {
	defer func() {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Flag = "--docker-btrfs-json"
		}
	}()
	fields, err := readJSONObject(file, data)
	if err != nil {
		return nil, err
	}
	l = &layer{source: file, settings: map[string]setting{}}
	var image, tag string
	var imageField jsonField
	for _, f := range fields {
		var dst *string
		switch f.name {
		case "docker_image":
			dst, imageField = &image, f
		case "docker_tag":
			dst = &tag
		default:
			l.warnings = append(l.warnings, fmt.Sprintf("%s: unknown field %q ignored (this file knows only docker_image and docker_tag)", file, f.name))
			continue
		}
		if string(f.raw) == "null" {
			*dst = ""
			continue
		}
		if err := json.Unmarshal(f.raw, dst); err != nil {
			return nil, fieldError(file, data, f, "a string")
		}
	}
	if image == "" {
		if tag != "" {
			l.warnings = append(l.warnings, fmt.Sprintf("%s: docker_tag %q ignored: there is no docker_image", file, tag))
		}
		return l, nil
	}
	if tag != "" {
		if hasTagOrDigest(image) {
			line, col := position(data, imageField.offset)
			return nil, &FileError{File: file, Line: line, Column: col,
				Err: fmt.Errorf("docker_image %q already has a tag or digest, and docker_tag is %q too; keep one of them", image, tag)}
		}
		image += ":" + tag
	}
	l.settings["docker_image"] = setting{value: image, source: file}
	return l, nil
}

// hasTagOrDigest reports whether a reference's last path element carries a
// ":tag", or the reference an "@digest" (a ':' before the last '/' is a
// registry port, as in host:5000/app).
func hasTagOrDigest(ref string) bool {
	if strings.Contains(ref, "@") {
		return true
	}
	return strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":")
}
