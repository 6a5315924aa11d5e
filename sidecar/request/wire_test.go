package request

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSpellingsOverTheWire sends every spelling of the table as the request
// target of a real HTTP/1.1 request, through a real net/http server, the
// normaliser and httputil.ReverseProxy, to an app that reports the target
// it received: the app gets exactly the canonical path (with the query
// untouched), and a refused spelling gets 400 and never reaches it.
func TestSpellingsOverTheWire(t *testing.T) {
	got := make(chan string, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)
	for _, opts := range []Options{{}, encodedSlash, pathParameters} {
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
		front := httptest.NewServer(Normalize(rp, opts, nil))
		for _, s := range spellings {
			if s.opts != opts || s.raw == "" {
				continue
			}
			t.Run(s.name, func(t *testing.T) {
				status := sendRaw(t, front.URL, s.raw+"?q=%2F..&a=%2e")
				if s.refused != "" {
					select {
					case uri := <-got:
						t.Fatalf("%q reached the app as %q", s.raw, uri)
					default:
					}
					if status != http.StatusBadRequest {
						t.Errorf("%q = %d, want 400", s.raw, status)
					}
					return
				}
				if status != http.StatusOK {
					t.Fatalf("%q = %d, want 200", s.raw, status)
				}
				if uri := <-got; uri != s.escaped+"?q=%2F..&a=%2e" {
					t.Errorf("%q reached the app as %q, want %q", s.raw, uri, s.escaped+"?q=%2F..&a=%2e")
				}
			})
		}
		front.Close()
	}
}

func sendRaw(t *testing.T, base, target string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
