package request

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkNormalize measures the normaliser as the first step of the
// chain, on the request shapes it sees: an already canonical path (most
// traffic, the fast path), one it rewrites, one it refuses, and a request
// with a Connection header naming an end-to-end header.
//
//	go test ./sidecar/request -run '^$' -bench Normalize -benchmem
func BenchmarkNormalize(b *testing.B) {
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	h := Normalize(next, Options{}, nil)
	for _, bc := range []struct {
		name, target string
		header       http.Header
		rewrites     bool // the normaliser changes the request in place
	}{
		{"canonical", "/api/v1/products/42?page=2", nil, false},
		{"rewritten", "/api//v1/./products/%34%32?page=2", nil, true},
		{"refused", "/public/..;/admin", nil, false},
		{"connection-option", "/api/v1/products/42", http.Header{"Connection": {"keep-alive, X-Tenant"}, "X-Tenant": {"a"}}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, bc.target, nil)
			r.Header.Set("Accept", "*/*")
			r.Header.Set("User-Agent", "bench")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			maps.Copy(r.Header, bc.header)
			for b.Loop() {
				if !bc.rewrites {
					h.ServeHTTP(w, r)
					continue
				}
				// Every iteration gets its own copy of a request the
				// normaliser rewrites (counted in the figures).
				rr := *r
				rr.Header = r.Header.Clone()
				h.ServeHTTP(w, &rr)
			}
		})
	}
}
