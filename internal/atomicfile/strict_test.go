package atomicfile

import "testing"

func TestDecodeStrict(t *testing.T) {
	type rec struct {
		A int `json:"a"`
	}
	for _, c := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{`{"a": 1}`, 1, false},
		{`{"a": 1}` + "\n", 1, false},
		{`{"a": 1, "b": 2}`, 0, true},  // unknown field
		{`{"a": 1} {"a": 2}`, 0, true}, // trailing object
		{`{"a": 1`, 0, true},           // truncated
		{``, 0, true},
	} {
		var r rec
		err := DecodeStrict([]byte(c.in), &r)
		if (err != nil) != c.wantErr {
			t.Errorf("DecodeStrict(%q) error = %v, want error %v", c.in, err, c.wantErr)
			continue
		}
		if err == nil && r.A != c.want {
			t.Errorf("DecodeStrict(%q) a = %d, want %d", c.in, r.A, c.want)
		}
	}
}
