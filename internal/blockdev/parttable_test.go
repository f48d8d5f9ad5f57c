package blockdev

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// gptImage makes a 200 MiB GPT disk image with sgdisk: an ESP, a root
// partition with a non-ASCII name, and a swap partition.
func gptImage(t testing.TB, dir string) string {
	t.Helper()
	requireTools(t, "sgdisk")
	img := image(t, dir, "disk.img", 200)
	run(t, "sgdisk",
		"-n", "1:2048:+40M", "-c", "1:EFI system", "-t", "1:ef00",
		"-n", "2:0:+130M", "-c", "2:dockroot root ü", "-t", "2:8300",
		"-n", "3:0:0", "-c", "3:swap", "-t", "3:8200",
		img)
	return img
}

func readTableFile(t testing.TB, path string) *PartitionTable {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pt, err := ReadPartitionTable(f, fileSize(t, path))
	if err != nil {
		t.Fatalf("ReadPartitionTable(%s): %v", path, err)
	}
	return pt
}

// checkAgainstSfdisk compares a table with what util-linux's sfdisk reads.
func checkAgainstSfdisk(t *testing.T, pt *PartitionTable, st sfdiskTable) {
	t.Helper()
	if pt == nil {
		t.Fatal("no partition table found")
	}
	want := st.PartitionTable
	id := strings.ToLower(strings.TrimPrefix(want.ID, "0x"))
	if pt.Type != want.Label || pt.UUID != id {
		t.Errorf("table = %s %s, sfdisk says %s %s", pt.Type, pt.UUID, want.Label, id)
	}
	if len(pt.Partitions) != len(want.Partitions) {
		t.Fatalf("%d partitions, sfdisk says %d", len(pt.Partitions), len(want.Partitions))
	}
	for i, p := range pt.Partitions {
		w := want.Partitions[i]
		wantUUID := strings.ToLower(w.UUID)
		if pt.Type == "dos" {
			wantUUID = fmt.Sprintf("%s-%02x", id, i+1) // the partitions are primary, 1..N
		}
		if p.UUID != wantUUID || p.Name != w.Name || p.FirstLBA != w.Start || p.SectorsLen != w.Size {
			t.Errorf("partition %d = %+v, sfdisk says %+v (PARTUUID %s)", p.Number, p, w, wantUUID)
		}
	}
}

func TestReadGPTMatchesSfdisk(t *testing.T) {
	requireTools(t, "sfdisk")
	img := gptImage(t, t.TempDir())
	pt := readTableFile(t, img)
	checkAgainstSfdisk(t, pt, sfdiskJSON(t, img))
	if p, ok := pt.Lookup(2); !ok || p.Name != "dockroot root ü" {
		t.Errorf("Lookup(2) = %+v %v, want the root partition", p, ok)
	}
	if blk := blkid(t, img); blk["PTTYPE"] != "gpt" || blk["PTUUID"] != pt.UUID {
		t.Errorf("blkid says PTTYPE=%s PTUUID=%s, we read %s %s", blk["PTTYPE"], blk["PTUUID"], pt.Type, pt.UUID)
	}
}

// A damaged primary header must not lose the disk: the kernel falls back
// to the backup GPT at the last LBA, and so must we.
func TestReadGPTFallsBackToBackupHeader(t *testing.T) {
	img := gptImage(t, t.TempDir())
	want := readTableFile(t, img)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 512), 512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got := readTableFile(t, img)
	if got == nil || got.UUID != want.UUID || len(got.Partitions) != len(want.Partitions) {
		t.Fatalf("after zeroing LBA 1: %+v, want the backup copy of %+v", got, want)
	}
	for i := range got.Partitions {
		if got.Partitions[i] != want.Partitions[i] {
			t.Errorf("backup partition %d = %+v, primary said %+v", i+1, got.Partitions[i], want.Partitions[i])
		}
	}
}

func TestReadMBRMatchesSfdisk(t *testing.T) {
	requireTools(t, "sfdisk", "blkid")
	img := image(t, t.TempDir(), "mbr.img", 64)
	cmd := exec.Command(mustTool(t, "sfdisk"), "-q", img)
	cmd.Stdin = strings.NewReader("label: dos\nlabel-id: 0xdeadbeef\nstart=2048, size=20MiB, type=83\ntype=c, bootable\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	pt := readTableFile(t, img)
	checkAgainstSfdisk(t, pt, sfdiskJSON(t, img))
	if pt.Partitions[1].UUID != "deadbeef-02" {
		t.Errorf("PARTUUID of partition 2 = %q, want deadbeef-02", pt.Partitions[1].UUID)
	}
	if blk := blkid(t, img); blk["PTTYPE"] != "dos" || blk["PTUUID"] != pt.UUID {
		t.Errorf("blkid says PTTYPE=%s PTUUID=%s, we read %s %s", blk["PTTYPE"], blk["PTUUID"], pt.Type, pt.UUID)
	}
}

// Whole-disk filesystems have no partition table, even vfat, whose boot
// sector ends in the same 0x55AA as an MBR.
func TestReadPartitionTableNoneOnFilesystems(t *testing.T) {
	dir := t.TempDir()
	for _, mkfs := range [][]string{{"mkfs.vfat", "-n", "X"}, {"mkfs.ext4", "-q"}, nil} {
		if mkfs != nil {
			requireTools(t, mkfs[0])
		}
		img := image(t, dir, "fs"+strings.Join(mkfs, ""), 40, mkfs...)
		if pt := readTableFile(t, img); pt != nil {
			t.Errorf("%v: found a %s table, want none", mkfs, pt.Type)
		}
	}
}

func mustTool(t testing.TB, tool string) string {
	t.Helper()
	p, err := lookTool(tool)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
