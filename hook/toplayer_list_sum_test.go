package hook

import (
	"reflect"
	"testing"

	"github.com/dockroot/dockroot/toplayer"
)

// TestAddSummaryCoversEveryField: addSummary adds up every field of
// toplayer.Summary, so a field added there is not silently dropped from
// boot.json when toplayer_path= names several directories.
func TestAddSummaryCoversEveryField(t *testing.T) {
	var one toplayer.Summary
	v := reflect.ValueOf(&one).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			f.SetInt(1)
		case reflect.Slice:
			f.Set(reflect.Append(reflect.MakeSlice(f.Type(), 0, 1), reflect.Zero(f.Type().Elem())))
		default:
			t.Fatalf("toplayer.Summary.%s is a %s: teach addSummary and this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	var sum toplayer.Summary
	addSummary(&sum, one)
	addSummary(&sum, one)
	s := reflect.ValueOf(sum)
	for i := 0; i < s.NumField(); i++ {
		name, f := s.Type().Field(i).Name, s.Field(i)
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.Int() != 2 {
				t.Errorf("addSummary does not add %s: %d after two", name, f.Int())
			}
		case reflect.Slice:
			if f.Len() != 2 {
				t.Errorf("addSummary does not append %s: %d after two", name, f.Len())
			}
		}
	}
}
