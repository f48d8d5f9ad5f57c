package snapshot

import (
	"errors"
	"fmt"
	"strings"
)

// Docker's defaults for a reference that names no registry or namespace
// (github.com/distribution/reference, normalize.go).
const (
	defaultDomain = "docker.io"
	legacyDomain  = "index.docker.io"
	officialRepo  = "library/"
	defaultTag    = "latest"
	maxNameLength = 255
)

// Ref is an image reference normalised the way Docker normalises it:
// "ubuntu" is Domain "docker.io", Path "library/ubuntu", Tag "latest".
// Exactly one of Tag and Digest is set after ParseRef: a digest pins the
// content, so Docker drops a tag given alongside it when it looks the
// reference up.
type Ref struct {
	Domain string // registry host[:port], "docker.io" by default
	Path   string // repository path, "library/x" for official images
	Tag    string // "latest" when neither tag nor digest is given
	Digest string // "sha256:<64 hex>"
}

// ParseRef parses and normalises an image reference: name[:tag] or
// name@sha256:<64 hex>, with an optional registry host[:port] in front.
// It follows Docker's grammar: a first component is a registry only when it
// contains '.' or ':' or is "localhost"; repository paths are lower case; a
// bare 64-hex string is an image ID, not a name (see ParseImageID).
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, errors.New("parse image reference: empty reference")
	}
	if _, ok := ParseImageID(s); ok {
		return Ref{}, fmt.Errorf("parse image reference %q: a 64-hex string is an image ID, not a repository name", s)
	}
	rest, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if err := CheckDigest(digest); err != nil {
			return Ref{}, fmt.Errorf("parse image reference %q: %w", s, err)
		}
	}
	name, tag := rest, ""
	// A tag follows the last ':' only if no '/' comes after it; otherwise the
	// ':' belongs to a registry port ("host:5000/app").
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		name, tag = rest[:i], rest[i+1:]
		if err := checkTag(tag); err != nil {
			return Ref{}, fmt.Errorf("parse image reference %q: %w", s, err)
		}
	}
	domain, path := splitDomain(name)
	// Docker limits the normalised name ("docker.io/library/x"), not the
	// one typed (distribution/reference ParseNormalizedNamed parses
	// domain + "/" + remainder); found by FuzzParseRef.
	if len(domain)+1+len(path) > maxNameLength {
		return Ref{}, fmt.Errorf("parse image reference %q: repository name %s/%s longer than %d characters", s, domain, path, maxNameLength)
	}
	if err := checkDomain(domain); err != nil {
		return Ref{}, fmt.Errorf("parse image reference %q: %w", s, err)
	}
	if strings.ToLower(path) != path {
		return Ref{}, fmt.Errorf("parse image reference %q: repository name must be lowercase (Docker refuses %q too); use %q",
			s, path, strings.ToLower(name)+s[len(name):])
	}
	if err := checkPath(path); err != nil {
		return Ref{}, fmt.Errorf("parse image reference %q: %w", s, err)
	}
	r := Ref{Domain: domain, Path: path, Tag: tag, Digest: digest}
	if r.Digest != "" {
		r.Tag = ""
	} else if r.Tag == "" {
		r.Tag = defaultTag
	}
	return r, nil
}

// splitDomain separates the registry from the repository path and applies
// Docker's defaults, as distribution/reference's splitDockerDomain does.
func splitDomain(name string) (domain, path string) {
	first, rest, ok := strings.Cut(name, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first) {
		domain, path = defaultDomain, name
	} else {
		domain, path = first, rest
	}
	if domain == legacyDomain {
		domain = defaultDomain
	}
	if domain == defaultDomain && !strings.Contains(path, "/") {
		path = officialRepo + path
	}
	return domain, path
}

// Name is the full repository name: "docker.io/library/ubuntu".
func (r Ref) Name() string { return r.Domain + "/" + r.Path }

// String is the full normalised reference: "docker.io/library/ubuntu:latest"
// or "docker.io/library/ubuntu@sha256:…".
func (r Ref) String() string { return r.Name() + r.suffix() }

// FamiliarName is the short repository name Docker shows and uses as the
// outer key of repositories.json: "ubuntu", "team/app", "host:5000/ns/app".
func (r Ref) FamiliarName() string {
	if r.Domain != defaultDomain {
		return r.Name()
	}
	if rest, ok := strings.CutPrefix(r.Path, officialRepo); ok && !strings.Contains(rest, "/") {
		return rest
	}
	// A Docker Hub path whose first component looks like a registry host
	// ("docker.io/0.0/app") would read back as that host: keep the domain
	// so the short form still names the same repository.
	if first, _, ok := strings.Cut(r.Path, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return r.Name()
	}
	return r.Path
}

// Familiar is the short reference Docker shows and uses as the inner key of
// repositories.json: "ubuntu:latest", "team/app:1", "host:5000/ns/app:1",
// "ubuntu@sha256:…".
func (r Ref) Familiar() string { return r.FamiliarName() + r.suffix() }

func (r Ref) suffix() string {
	if r.Digest != "" {
		return "@" + r.Digest
	}
	return ":" + r.Tag
}

// ParseImageID recognises a full image ID, "sha256:<64 hex>" or bare 64 hex,
// and returns it as "sha256:<64 hex>".
func ParseImageID(s string) (string, bool) {
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) != 64 || !IsLowerHex(h) {
		return "", false
	}
	return "sha256:" + h, true
}

// MinIDPrefix is the shortest image-ID prefix accepted: the 12 digits that
// `docker images` prints.
const MinIDPrefix = 12

// ParseIDPrefix recognises an image-ID prefix of MinIDPrefix to 63 hex
// digits, with or without "sha256:", and returns the hex digits.
func ParseIDPrefix(s string) (string, bool) {
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) < MinIDPrefix || len(h) >= 64 || !IsLowerHex(h) {
		return "", false
	}
	return h, true
}

func IsLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// CheckDigest accepts only sha256 digests: they are the only kind Docker's
// image and reference stores write.
func CheckDigest(d string) error {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || alg != "sha256" {
		return fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	if len(hex) != 64 || !IsLowerHex(hex) {
		return fmt.Errorf("digest %q: want 64 lower-case hex digits after sha256:", d)
	}
	return nil
}

// checkTag follows Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func checkTag(tag string) error {
	if tag == "" || len(tag) > 128 {
		return fmt.Errorf("tag %q: want 1 to 128 characters", tag)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		word := c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !word && (i == 0 || c != '.' && c != '-') {
			return fmt.Errorf("tag %q: invalid character %q (allowed: letters, digits, '_', and '.' or '-' after the first)", tag, c)
		}
	}
	return nil
}

// checkDomain follows Docker's domain grammar: dot-separated components of
// letters, digits and inner hyphens, then an optional numeric port.
func checkDomain(domain string) error {
	host, port, hasPort := strings.Cut(domain, ":")
	if hasPort {
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return fmt.Errorf("registry %q: port must be numeric", domain)
		}
	}
	for _, c := range strings.Split(host, ".") {
		if c == "" || c[0] == '-' || c[len(c)-1] == '-' {
			return fmt.Errorf("registry %q: empty component or component starting or ending with '-'", domain)
		}
		for i := 0; i < len(c); i++ {
			ch := c[i]
			if !(ch == '-' || '0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z') {
				return fmt.Errorf("registry %q: invalid character %q", domain, ch)
			}
		}
	}
	return nil
}

// checkPath follows Docker's path grammar: '/'-separated components of
// [a-z0-9]+ joined by the separators '.', '_', "__" or runs of '-'.
func checkPath(path string) error {
	for _, c := range strings.Split(path, "/") {
		if err := checkComponent(c); err != nil {
			return fmt.Errorf("repository path %q: %w", path, err)
		}
	}
	return nil
}

func checkComponent(c string) error {
	if c == "" {
		return errors.New("empty path component")
	}
	alnum := func(b byte) bool { return '0' <= b && b <= '9' || 'a' <= b && b <= 'z' }
	if !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return fmt.Errorf("component %q must start and end with a lower-case letter or digit", c)
	}
	for i := 0; i < len(c); {
		if alnum(c[i]) {
			i++
			continue
		}
		j := i
		for j < len(c) && !alnum(c[j]) {
			j++
		}
		sep := c[i:j]
		if sep != "." && sep != "_" && sep != "__" && strings.Trim(sep, "-") != "" {
			return fmt.Errorf("component %q: invalid separator %q (allowed: '.', '_', '__' or dashes)", c, sep)
		}
		i = j
	}
	return nil
}
