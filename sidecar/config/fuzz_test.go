package config

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes through the strict parser, defaulting and
// validation: none may panic, and Parse never returns a nil config without
// an error. The shape checker walks untrusted input by reflection, which is
// where a panic would hide.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte(`{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig"}`))
	f.Add([]byte(`{"redis":[{"dialTimeout":"1s","addrs":null}],"sessions":[{"selector":{"matchLabels":{"a":"b"}}}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if c == nil {
			t.Fatal("Parse returned nil without an error")
		}
		c.Default()
		_ = c.Validate()
	})
}
