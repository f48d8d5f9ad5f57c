package bootmenu

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A menu written to a file is recorded with everything needed to write it
// again; one written to standard output is not; records of unknown
// fields or another loader are refused.
func TestMenuRecords(t *testing.T) {
	boot := t.TempDir()
	if got, err := ReadMenuRecords(boot); err != nil || len(got) != 0 {
		t.Fatalf("no records: %v %v", got, err)
	}
	grub := Menu{Bootloader: LoaderGRUB, GRUBStyle: GRUBConfig, BootDir: boot, Out: "/boot/grub/custom.cfg",
		Params: Params{Root: "LABEL=linux", RWLayer: "rw", Extra: []string{"quiet"}, LoaderPath: "/dockroot", Default: "desk:stable"}}
	bls := Menu{Bootloader: LoaderSystemdBoot, BootDir: boot, Out: "/efi", Params: Params{Root: "UUID=1", RWLayer: "rw", LoaderPath: "/"}}
	for _, m := range []Menu{grub, bls, {Bootloader: LoaderRefind, BootDir: boot, Out: "-"}} {
		if err := WriteMenuRecord(m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadMenuRecords(boot)
	if err != nil {
		t.Fatal(err)
	}
	grub.Schema, bls.Schema = menuRecordSchema, menuRecordSchema
	if !reflect.DeepEqual(got, []Menu{grub, bls}) {
		t.Errorf("records:\n%+v\nwant\n%+v", got, []Menu{grub, bls})
	}
	// Installed tags are directories with entry.json: the records are not.
	if in, err := ReadInstalled(boot); err != nil || len(in) != 0 {
		t.Errorf("ReadInstalled with only records = %v, %v", in, err)
	}
	for name, content := range map[string]string{
		LoaderRefind: `{"schema": 1, "bootloader": "refind", "boot_dir": "x", "out": "y", "params": {}, "color": "red"}`,
		LoaderGRUB:   `{"schema": 1, "bootloader": "refind", "boot_dir": "x", "out": "y", "params": {}}`,
	} {
		if err := os.WriteFile(filepath.Join(boot, MenuRecordPrefix+name+".json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadMenuRecords(boot); err == nil || !strings.Contains(err.Error(), MenuRecordPrefix+name) {
			t.Errorf("a bad %s record: %v, want an error naming the file", name, err)
		}
		os.Remove(filepath.Join(boot, MenuRecordPrefix+name+".json"))
	}
}
