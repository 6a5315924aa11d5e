// Command echo is the app the documentation's examples run behind the
// sidecar: it answers every request with the request as it arrived, so a
// reader sees exactly what the sidecar passed on (which headers it added,
// removed or kept, the path it forwarded).
//
//	go run ./hack/echo                 # listens on 127.0.0.1:3000
//	gatehouse-sidecar --config gatehouse.json --upstream http://127.0.0.1:3000
//
// The answer is 200 text/plain: the request line, then the request's
// headers (Host first, the others sorted, one line per value), then a
// blank line and the length of the body it read. Query parameters let an
// example choose the answer: every "header=Name:value" adds a response
// header (for caching examples: header=Cache-Control:max-age=60) and
// "status=NNN" sets the status. The response header Echo-Count is how many
// requests for this path the app has answered, so a cached answer shows
// the count of the request that filled it.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "listen address")
	flag.Parse()
	srv := &http.Server{Addr: *listen, Handler: newEcho(), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

type echo struct {
	mu     sync.Mutex
	counts map[string]int
}

func newEcho() *echo { return &echo{counts: map[string]int{}} }

func (e *echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, r.Body)
	e.mu.Lock()
	e.counts[r.URL.Path]++
	count := e.counts[r.URL.Path]
	e.mu.Unlock()

	status := http.StatusOK
	q := r.URL.Query()
	if s := q.Get("status"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v >= 200 && v <= 599 {
			status = v
		}
	}
	for _, h := range q["header"] {
		if name, value, ok := strings.Cut(h, ":"); ok {
			w.Header().Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Echo-Count", strconv.Itoa(count))
	w.WriteHeader(status)

	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", r.Method, r.RequestURI, r.Proto)
	fmt.Fprintf(&b, "Host: %s\n", r.Host)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintf(&b, "\n%d bytes of body\n", n)
	_, _ = io.WriteString(w, b.String())
}
