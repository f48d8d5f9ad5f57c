package kernel

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-56-amd64", "6.1.0-9-amd64", 1}, // numeric, not byte order
		{"6.12.117+deb12-amd64", "6.1.0-56-amd64", 1},
		{"6.9.12", "6.12.1", -1},
		{"5.10.0-30-amd64", "5.10.0-30-amd64", 0},
		{"6.1.0-056-amd64", "6.1.0-56-amd64", 0}, // leading zeros
		{"6.1.0", "6.1.0-1", -1},                 // a prefix is older
		{"6.1.10-1-amd64", "6.1.9-1-amd64", 1},
		{"6.1.0-56-amd64", "6.1.0-56-cloud-amd64", -1},
		{"4.19.0-27-amd64", "10.0", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestFindKernels(t *testing.T) {
	fsys := fstest.MapFS{
		"lib/modules/6.1.0-9-amd64/kernel/fs/btrfs/btrfs.ko":      {},
		"lib/modules/6.1.0-56-amd64/modules.dep":                  {},
		"lib/modules/5.10.0-30-amd64/updates/dkms/.keep":          {}, // leftover of a removed kernel
		"usr/lib/modules/6.12.117+deb12-amd64/modules.order":      {},
		"usr/lib/modules/6.1.0-56-amd64/modules.order":            {}, // same version twice: lib/ wins
		"usr/lib/modules/6.1.0-56-amd64/kernel/fs/btrfs/btrfs.ko": {},
	}
	trees, err := Find(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range trees {
		got = append(got, tr.Dir)
	}
	want := []string{"usr/lib/modules/6.12.117+deb12-amd64", "lib/modules/6.1.0-56-amd64", "lib/modules/6.1.0-9-amd64"}
	if !slices.Equal(got, want) {
		t.Errorf("Find = %v, want %v", got, want)
	}

	tr, err := Pick(fsys, "ROOT", "")
	if err != nil || tr.Version != "6.12.117+deb12-amd64" {
		t.Errorf("Pick newest = %v, %v", tr, err)
	}
	tr, err = Pick(fsys, "ROOT", "6.1.0-9-amd64")
	if err != nil || tr.Dir != "lib/modules/6.1.0-9-amd64" {
		t.Errorf("Pick 6.1.0-9 = %v, %v", tr, err)
	}
	_, err = Pick(fsys, "ROOT", "5.10.0-30-amd64")
	if err == nil || !strings.Contains(err.Error(), "available: 6.12.117+deb12-amd64, 6.1.0-56-amd64, 6.1.0-9-amd64") {
		t.Errorf("Pick missing = %v, want the available versions listed", err)
	}
	_, err = Pick(fstest.MapFS{"etc/hostname": {}}, "ROOT", "")
	if err == nil || !strings.Contains(err.Error(), "no kernel modules under ROOT") {
		t.Errorf("Pick empty root = %v", err)
	}
}
