package cache

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A shared-tier entry comes from Redis, which anyone with access to it may
// have written: every truncation of an encoded entry within its fields is
// refused (and none panics); a truncation within the body is a shorter
// body, as before.
func TestEntryDecodeTruncated(t *testing.T) {
	e := &entry{
		Status: 200, Header: http.Header{"Content-Type": {"text/plain"}, "Vary": {"Accept", "Accept-Language"}, "X-Empty": {}},
		Body: []byte("body"), ResponseTime: time.UnixMilli(1_700_000_000_000), Lifetime: time.Minute, Tags: []string{"t1", ""},
	}
	raw := e.marshal()
	bodyAt := len(raw) - len(e.Body)
	for i := range raw {
		got, err := unmarshalEntry(raw[:i])
		switch {
		case i < bodyAt && err == nil:
			t.Errorf("truncated at %d of %d (fields end at %d): decoded %+v", i, len(raw), bodyAt, got)
		case i >= bodyAt && (err != nil || string(got.Body) != string(e.Body[:i-bodyAt])):
			t.Errorf("truncated in the body at %d: %v %q", i, err, got.Body)
		}
	}
	got, err := unmarshalEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// The decoded values are separate slices: appending to one field's
	// values must not change another's.
	got.Header["Content-Type"] = append(got.Header["Content-Type"], "x")
	if vs := got.Header["Vary"]; len(vs) != 2 || vs[0] != "Accept" {
		t.Errorf("Vary after appending to Content-Type: %q", vs)
	}
}
