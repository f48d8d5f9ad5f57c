package capture

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// node is one entry of a test tree: a file with content and mode, a
// directory (dir), or a symlink (link).
type node struct {
	content string
	mode    os.FileMode
	dir     bool
	link    string
}

// build makes the tree under root, parents 0755.
func build(t *testing.T, root string, tree map[string]node) {
	t.Helper()
	names := make([]string, 0, len(tree))
	for n := range tree {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		nd := tree[n]
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case nd.link != "":
			err = os.Symlink(nd.link, p)
		case nd.dir:
			if err = os.MkdirAll(p, nd.mode); err == nil {
				err = os.Chmod(p, nd.mode)
			}
		default:
			if err = os.WriteFile(p, []byte(nd.content), nd.mode); err == nil {
				err = os.Chmod(p, nd.mode)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// handAccounts are a machine's account databases as useradd leaves
// them: system users (root, daemon, svc), two human users (alice with a
// user-private group, bob in users and sudo), nobody; sudo has a system
// member and a human one, proj a human and a system member, team only a
// system member; subuid names bob once by uid.
var handAccounts = map[string]node{
	"etc/passwd": {content: lines(
		"root:x:0:0:root:/root:/bin/bash",
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
		"svc:x:999:999::/var/lib/svc:/usr/sbin/nologin",
		"alice:x:1000:1000:Alice:/home/alice:/bin/bash",
		"bob:x:1001:100:Bob:/home/bob:/bin/zsh",
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"), mode: 0o644},
	"etc/shadow": {content: lines(
		"root:$y$root:19000:0:99999:7:::",
		"daemon:*:19000:0:99999:7:::",
		"svc:!:19000::::::",
		"alice:$y$alice:19500:0:99999:7:::",
		"bob:$y$bob:19501:0:99999:7:::",
		"nobody:*:19000:0:99999:7:::"), mode: 0o640},
	"etc/group": {content: lines(
		"root:x:0:",
		"daemon:x:1:",
		"sudo:x:27:daemon,bob",
		"users:x:100:",
		"svc:x:999:",
		"alice:x:1000:",
		"team:x:1500:svc",
		"proj:x:2000:alice,svc",
		"nogroup:x:65534:"), mode: 0o644},
	"etc/gshadow": {content: lines(
		"root:*::",
		"daemon:*::",
		"sudo:*:daemon:daemon,bob",
		"users:*::",
		"svc:!::",
		"alice:!::",
		"team:!::svc",
		"proj:!:alice:alice,svc",
		"nogroup:*::"), mode: 0o640},
	"etc/subuid": {content: lines("alice:100000:65536", "bob:165536:65536", "999:231072:65536", "1001:300000:1000"), mode: 0o644},
	"etc/subgid": {content: lines("alice:100000:65536", "bob:165536:65536"), mode: 0o644},
}

// wantAccounts is what a capture of handAccounts writes.
var wantAccounts = map[string]string{
	"etc/passwd":  lines("alice:x:1000:1000:Alice:/home/alice:/bin/bash", "bob:x:1001:100:Bob:/home/bob:/bin/zsh"),
	"etc/shadow":  lines("alice:$y$alice:19500:0:99999:7:::", "bob:$y$bob:19501:0:99999:7:::"),
	"etc/group":   lines("sudo:x:27:bob", "users:x:100:", "alice:x:1000:", "proj:x:2000:alice"),
	"etc/gshadow": lines("sudo:*::bob", "users:*::", "alice:!::", "proj:!:alice:alice"),
	"etc/subuid":  lines("alice:100000:65536", "bob:165536:65536", "1001:300000:1000"),
	"etc/subgid":  lines("alice:100000:65536", "bob:165536:65536"),
}

// machineFiles are a machine's own files but its accounts.
var machineFiles = map[string]node{
	"etc":                                   {dir: true, mode: 0o755},
	"etc/hostname":                          {content: "desk1\n", mode: 0o644},
	"etc/machine-id":                        {content: "0123456789abcdef0123456789abcdef\n", mode: 0o444},
	"etc/hosts":                             {content: lines("127.0.0.1 localhost", "127.0.1.1 desk1.example.org desk1"), mode: 0o644},
	"etc/ssh":                               {dir: true, mode: 0o755},
	"etc/ssh/ssh_host_ed25519_key":          {content: "PRIVATE ed25519\n", mode: 0o600},
	"etc/ssh/ssh_host_ed25519_key.pub":      {content: "ssh-ed25519 AAAA root@desk1\n", mode: 0o644},
	"etc/ssh/ssh_host_rsa_key":              {content: "PRIVATE rsa\n", mode: 0o600},
	"etc/ssh/sshd_config":                   {content: "PermitRootLogin no\n", mode: 0o644},
	"etc/NetworkManager/system-connections": {dir: true, mode: 0o700},
	"etc/NetworkManager/system-connections/home.nmconnection": {content: "[wifi]\nssid=home\n", mode: 0o600},
	"etc/NetworkManager/NetworkManager.conf":                  {content: "[main]\n", mode: 0o644},
	"etc/systemd/network/10-wired.network":                    {content: "[Match]\nName=en*\n", mode: 0o644},
	"etc/systemd/network/99-default.link":                     {link: "/dev/null"},
	"etc/fstab":                                               {content: "LABEL=home /home btrfs subvol=home 0 0\n", mode: 0o644},
	"etc/localtime":                                           {link: "/usr/share/zoneinfo/Europe/Paris"},
	"etc/timezone":                                            {content: "Europe/Paris\n", mode: 0o644},
	"etc/adjtime":                                             {content: "0.0 0 0.0\n0\nUTC\n", mode: 0o644},
}

func merged(ms ...map[string]node) map[string]node {
	out := map[string]node{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// listTree returns every path under root, relative, "/"-suffixed for
// directories; nil when root does not exist.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if fi.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileActions(rep *Report) map[string]Action {
	m := map[string]Action{}
	for _, f := range rep.Files {
		m[f.Path] = f.Action
	}
	return m
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
