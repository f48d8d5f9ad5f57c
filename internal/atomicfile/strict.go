package atomicfile

import (
	"bytes"
	"encoding/json"
	"errors"
)

// DecodeStrict decodes one JSON object from data into v, refusing unknown
// fields and anything after the object. dockroot's own state files are read
// this way, so that a newer dockroot's file is never half-understood and
// then overwritten with what this one kept of it.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
