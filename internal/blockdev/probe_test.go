package blockdev

import (
	"os"
	"strconv"
	"testing"
)

// TestProbeMatchesBlkid makes real filesystems with their mkfs tools and
// checks that Probe reads what util-linux's blkid reads from the same file.
func TestProbeMatchesBlkid(t *testing.T) {
	requireTools(t, "blkid")
	cases := []struct {
		name   string
		tool   string
		sizeMB int
		mkfs   []string
		want   Superblock // fields blkid cannot be asked for; Type must match too
	}{
		{"btrfs label", "mkfs.btrfs", 120, []string{"mkfs.btrfs", "-q", "-L", "dockroot-root"}, Superblock{Type: "btrfs", Label: "dockroot-root"}},
		{"btrfs long label", "mkfs.btrfs", 120, []string{"mkfs.btrfs", "-q", "-L", "a label with spaces and ünïcode"}, Superblock{Type: "btrfs", Label: "a label with spaces and ünïcode"}},
		{"btrfs no label", "mkfs.btrfs", 120, []string{"mkfs.btrfs", "-q"}, Superblock{Type: "btrfs"}},
		{"ext4", "mkfs.ext4", 16, []string{"mkfs.ext4", "-q", "-L", "top", "-U", "0d1e2f30-1111-4222-8333-444455556666"}, Superblock{Type: "ext4", Label: "top", UUID: "0d1e2f30-1111-4222-8333-444455556666"}},
		{"ext4 16-char label", "mkfs.ext4", 16, []string{"mkfs.ext4", "-q", "-L", "0123456789abcdef"}, Superblock{Type: "ext4", Label: "0123456789abcdef"}},
		{"ext3", "mkfs.ext3", 16, []string{"mkfs.ext3", "-q", "-L", "old"}, Superblock{Type: "ext3", Label: "old"}},
		{"ext2", "mkfs.ext2", 16, []string{"mkfs.ext2", "-q"}, Superblock{Type: "ext2"}},
		{"vfat FAT16", "mkfs.vfat", 40, []string{"mkfs.vfat", "-n", "ESP", "-i", "1234abcd"}, Superblock{Type: "vfat", Label: "ESP", UUID: "1234-ABCD", Version: "FAT16"}},
		{"vfat FAT32", "mkfs.vfat", 64, []string{"mkfs.vfat", "-F", "32", "-n", "BOOT PART", "-i", "0badcafe"}, Superblock{Type: "vfat", Label: "BOOT PART", UUID: "0BAD-CAFE", Version: "FAT32"}},
		{"vfat FAT12 no label", "mkfs.vfat", 2, []string{"mkfs.vfat", "-F", "12", "-i", "00000001"}, Superblock{Type: "vfat", UUID: "0000-0001", Version: "FAT12"}},
		{"swap", "mkswap", 10, []string{"mkswap", "-L", "sw", "-U", "11111111-2222-3333-4444-555555555555"}, Superblock{Type: "swap", Label: "sw", UUID: "11111111-2222-3333-4444-555555555555", Version: "1"}},
		{"swap 64k pages", "mkswap", 10, []string{"mkswap", "-p", "65536", "-L", "big"}, Superblock{Type: "swap", Label: "big", Version: "1"}},
		{"empty", "", 1, nil, Superblock{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool != "" {
				requireTools(t, tc.tool)
			}
			img := image(t, t.TempDir(), "img", tc.sizeMB, tc.mkfs...)
			got, err := ProbeFile(img)
			if err != nil {
				t.Fatalf("ProbeFile: %v", err)
			}
			bl := blkid(t, img)
			want := Superblock{
				Type: bl["TYPE"], Label: bl["LABEL"], UUID: bl["UUID"],
				UUIDSub: bl["UUID_SUB"], Version: bl["VERSION"],
			}
			if got != want {
				t.Errorf("Probe = %+v\nblkid  = %+v", got, want)
			}
			// The table pins what we asked mkfs for, so a blkid that
			// misreads the same way cannot hide a bug.
			if got.Type != tc.want.Type || got.Label != tc.want.Label ||
				(tc.want.UUID != "" && got.UUID != tc.want.UUID) ||
				(tc.want.Version != "" && got.Version != tc.want.Version) {
				t.Errorf("Probe = %+v, want at least %+v", got, tc.want)
			}
		})
	}
}

// TestHibernationSignature stamps each hibernation signature where a
// hibernating kernel writes it (the end of the first page of a mkswap'd
// area) and checks both HibernationSignature and Probe, against blkid.
func TestHibernationSignature(t *testing.T) {
	requireTools(t, "mkswap", "blkid")
	cases := []struct {
		sig      string
		pageSize int64
	}{
		{"S1SUSPEND", 4096},
		{"S2SUSPEND", 4096},
		{"ULSUSPEND", 4096},
		{"LINHIB0001", 4096},
		{"S1SUSPEND", 16384},
	}
	for _, tc := range cases {
		t.Run(tc.sig+"/"+strconv.Itoa(int(tc.pageSize)), func(t *testing.T) {
			img := image(t, t.TempDir(), "swap", 10, "mkswap", "-p", strconv.Itoa(int(tc.pageSize)), "-L", "hib", "-U", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
			if found, sig, err := HibernationSignature(img); err != nil || found {
				t.Fatalf("fresh swap: HibernationSignature = %v %q %v, want false", found, sig, err)
			}
			f, err := os.OpenFile(img, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			// The kernel writes a 10-byte field: shorter signatures are
			// NUL-padded.
			field := make([]byte, 10)
			copy(field, tc.sig)
			if _, err := f.WriteAt(field, tc.pageSize-10); err != nil {
				t.Fatal(err)
			}
			f.Close()

			found, sig, err := HibernationSignature(img)
			if err != nil || !found || sig != tc.sig {
				t.Errorf("HibernationSignature = %v %q %v, want true %q", found, sig, err, tc.sig)
			}
			sb, err := ProbeFile(img)
			if err != nil {
				t.Fatal(err)
			}
			bl := blkid(t, img)
			if sb.Type != "swsuspend" || sb.Type != bl["TYPE"] || sb.Version != bl["VERSION"] || sb.Hibernation != tc.sig {
				t.Errorf("Probe = %+v; blkid TYPE=%q VERSION=%q", sb, bl["TYPE"], bl["VERSION"])
			}
			if sb.Label != "hib" || sb.UUID != "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" {
				t.Errorf("hibernated swap lost its header: %+v", sb)
			}
		})
	}
}

func TestHibernationSignatureMissingFile(t *testing.T) {
	if _, _, err := HibernationSignature("/nonexistent/swap"); err == nil {
		t.Fatal("want an error for a missing device, got none")
	}
}

func TestFormatGUIDIsMixedEndian(t *testing.T) {
	// The EFI System Partition type GUID as it is stored on disk.
	raw := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if got, want := formatGUID(raw), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"; got != want {
		t.Errorf("formatGUID = %s, want %s", got, want)
	}
	if got, want := formatUUID(raw), "28732ac1-1ff8-d211-ba4b-00a0c93ec93b"; got != want {
		t.Errorf("formatUUID = %s, want %s", got, want)
	}
	if formatUUID(make([]byte, 16)) != "" || formatGUID(make([]byte, 16)) != "" {
		t.Error("an all-zero UUID must format as empty")
	}
}
