package rwlayer

import (
	"reflect"
	"strings"
	"testing"
)

// TestBaseKeyName: a base is found only by a key equal in every field,
// and its slot (the menu entry whose base a save replaces) is the rw
// layer and the reference alone.
func TestBaseKeyName(t *testing.T) {
	k := BaseKey{Layer: "@/rw", Ref: "docker.io/library/desk:stable", ImageID: "sha256:aa",
		ImageSubvol: "var/lib/docker/btrfs/subvolumes/x", ImageUUID: "u-1", ImageCTrans: 7,
		Toplayer: "/dev/vda2 (LABEL=linux):boot_docker", Fingerprint: "f0"}
	name := k.Name()
	if len(name) != 12+1+32 || !strings.HasPrefix(name, k.slot()+"-") {
		t.Fatalf("Name() = %q, want <12-hex slot>-<32-hex key>", name)
	}
	v := reflect.ValueOf(&k).Elem()
	for i := 0; i < v.NumField(); i++ {
		c := k
		f := reflect.ValueOf(&c).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		default:
			t.Fatalf("field %s: add it to this test", v.Type().Field(i).Name)
		}
		field := v.Type().Field(i).Name
		if c.Name() == name {
			t.Errorf("changing %s does not change the base's name", field)
		}
		sameSlot := c.slot() == k.slot()
		if wantSame := field != "Layer" && field != "Ref"; sameSlot != wantSame {
			t.Errorf("changing %s: same slot = %v, want %v", field, sameSlot, wantSame)
		}
	}
	// Length-prefixed: moving a character between fields is another key.
	c := k
	c.Layer, c.Ref = k.Layer+"d", strings.TrimPrefix(k.Ref, "d")
	if c.Name() == name || c.slot() == k.slot() {
		t.Error("moving a character from Ref to Layer gives the same name")
	}
}
