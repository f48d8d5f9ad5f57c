package snapshot

import (
	"strings"
	"testing"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseRef(t *testing.T) {
	tests := []struct {
		in                      string
		full, familiar, repoKey string
	}{
		{"ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "ubuntu"},
		{"ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04", "ubuntu"},
		{"library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "ubuntu"},
		{"docker.io/library/ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04", "ubuntu"},
		{"docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "ubuntu"},
		{"index.docker.io/library/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest", "ubuntu"},
		{"index.docker.io/team/app:1", "docker.io/team/app:1", "team/app:1", "team/app"},
		{"team/app:1", "docker.io/team/app:1", "team/app:1", "team/app"},
		{"a/b/c", "docker.io/a/b/c:latest", "a/b/c:latest", "a/b/c"},
		{"host:5000/ns/app:1", "host:5000/ns/app:1", "host:5000/ns/app:1", "host:5000/ns/app"},
		{"host:5000/app", "host:5000/app:latest", "host:5000/app:latest", "host:5000/app"},
		{"registry.example:5000/team/desk:1", "registry.example:5000/team/desk:1", "registry.example:5000/team/desk:1", "registry.example:5000/team/desk"},
		{"quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest", "quay.io/x/y"},
		{"localhost/x", "localhost/x:latest", "localhost/x:latest", "localhost/x"},
		{"localhost:5000/x:t", "localhost:5000/x:t", "localhost:5000/x:t", "localhost:5000/x"},
		// A first component without '.' or ':' is a namespace, not a host.
		{"myhost/x", "docker.io/myhost/x:latest", "myhost/x:latest", "myhost/x"},
		{"ubuntu@sha256:" + hex64, "docker.io/library/ubuntu@sha256:" + hex64, "ubuntu@sha256:" + hex64, "ubuntu"},
		// A tag given with a digest is dropped: the digest decides.
		{"ubuntu:22.04@sha256:" + hex64, "docker.io/library/ubuntu@sha256:" + hex64, "ubuntu@sha256:" + hex64, "ubuntu"},
		{"host:5000/app@sha256:" + hex64, "host:5000/app@sha256:" + hex64, "host:5000/app@sha256:" + hex64, "host:5000/app"},
		{"x:Tag_1.0-rc", "docker.io/library/x:Tag_1.0-rc", "x:Tag_1.0-rc", "x"},
		{"a.b_c__d---e:1", "docker.io/library/a.b_c__d---e:1", "a.b_c__d---e:1", "a.b_c__d---e"},
		// 12 hex digits are a valid name too; Resolve tries the name first.
		{"0123456789ab", "docker.io/library/0123456789ab:latest", "0123456789ab:latest", "0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRef(tt.in)
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tt.in, err)
			}
			if got := r.String(); got != tt.full {
				t.Errorf("String() = %q, want %q", got, tt.full)
			}
			if got := r.Familiar(); got != tt.familiar {
				t.Errorf("Familiar() = %q, want %q", got, tt.familiar)
			}
			if got := r.FamiliarName(); got != tt.repoKey {
				t.Errorf("FamiliarName() = %q, want %q", got, tt.repoKey)
			}
			if (r.Tag == "") == (r.Digest == "") {
				t.Errorf("want exactly one of Tag %q and Digest %q", r.Tag, r.Digest)
			}
			// Normalisation is idempotent in both forms.
			for _, again := range []string{r.String(), r.Familiar()} {
				r2, err := ParseRef(again)
				if err != nil || r2 != r {
					t.Errorf("ParseRef(%q) = %+v, %v; want %+v", again, r2, err, r)
				}
			}
		})
	}
}

func TestParseRefErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty reference"},
		{"Ubuntu", "must be lowercase"},
		{"team/App:1", `use "team/app:1"`},
		{"host:5000/Ns/app", "must be lowercase"},
		{hex64, "image ID, not a repository name"},
		{"sha256:" + hex64, "image ID, not a repository name"},
		{"x@sha256:abc", "64 lower-case hex"},
		{"x@md5:" + hex64, "want sha256"},
		{"x@sha256:" + strings.ToUpper(hex64), "64 lower-case hex"},
		{"x:", "want 1 to 128"},
		{"x:.bad", "invalid character"},
		{"x:" + strings.Repeat("a", 129), "want 1 to 128"},
		{"x/", "empty path component"},
		{"-x", "must start and end"},
		{"x-", "must start and end"},
		{"a..b", "invalid separator"},
		{"a___b", "invalid separator"},
		{"a b", "invalid separator"},
		{"host:port/x", "port must be numeric"},
		{"-host.io/x", "starting or ending with '-'"},
		{"ho_st.io/x", "invalid character"},
		{strings.Repeat("a", 256), "longer than 255"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRef(tt.in)
			if err == nil {
				t.Fatalf("ParseRef(%q) = %+v, want error containing %q", tt.in, r, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRef(%q) error %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestParseImageID(t *testing.T) {
	tests := []struct {
		in   string
		id   string
		ok   bool
		pfx  string
		isPf bool
	}{
		{hex64, "sha256:" + hex64, true, "", false},
		{"sha256:" + hex64, "sha256:" + hex64, true, "", false},
		{hex64[:12], "", false, hex64[:12], true},
		{"sha256:" + hex64[:20], "", false, hex64[:20], true},
		{hex64[:63], "", false, hex64[:63], true},
		{hex64[:11], "", false, "", false},
		{strings.ToUpper(hex64), "", false, "", false},
		{hex64 + "0", "", false, "", false},
		{"ubuntu", "", false, "", false},
	}
	for _, tt := range tests {
		id, ok := ParseImageID(tt.in)
		if id != tt.id || ok != tt.ok {
			t.Errorf("ParseImageID(%q) = %q, %v; want %q, %v", tt.in, id, ok, tt.id, tt.ok)
		}
		p, ok := ParseIDPrefix(tt.in)
		if p != tt.pfx || ok != tt.isPf {
			t.Errorf("ParseIDPrefix(%q) = %q, %v; want %q, %v", tt.in, p, ok, tt.pfx, tt.isPf)
		}
	}
}
