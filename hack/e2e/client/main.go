// Command e2e-client is the HTTP client the e2e scenarios run inside a
// client pod (`kubectl exec`), so every request reaches the app the way a
// neighbour in the cluster would: by Service name, through CoreDNS and
// kube-proxy.
//
//	e2e-client do [-X METHOD] [-H 'Name: value']… [-d BODY] [-n COUNT] [--until STATUS] URL
//	e2e-client load --duration 30s --rate 20 [-H 'Name: value']… URL…
//	e2e-client grpc [--call unary|stream|health] [-n COUNT] [-H 'key: value']… HOST:PORT
//	e2e-client idle
//
// do prints one JSON object per response (status, headers, body). load sends
// requests at a fixed rate over one pooled keep-alive client, like a real
// client would, and prints one JSON summary: what each URL answered
// (status, and the problem type of problem+json answers) and every transport
// error, so a lost request is never silent. grpc makes gRPC calls to
// hack/e2e/grpcapp over one client connection and prints each call's status
// and metadata. idle keeps the pod running until it is stopped.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2e-client do|load [flags] URL… | grpc [flags] HOST:PORT | idle")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "do":
		err = do(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	case "grpc":
		err = callGRPC(os.Args[2:])
	case "idle":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
	default:
		err = fmt.Errorf("unknown command %q: want do, load, grpc or idle", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-client:", err)
		os.Exit(1)
	}
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func (h headerFlags) apply(req *http.Request) error {
	for _, kv := range h {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return fmt.Errorf("header %q: want 'Name: value'", kv)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	return nil
}

// Response is what do prints for each response.
type Response struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers"`
	Body    string      `json:"body"`
}

func do(args []string) error {
	fs := flag.NewFlagSet("do", flag.ContinueOnError)
	method := fs.String("X", http.MethodGet, "request method")
	body := fs.String("d", "", "request body")
	count := fs.Int("n", 1, "number of requests")
	until := fs.Int("until", 0, "stop after the first response with this status")
	insecure := fs.Bool("k", false, "accept any TLS certificate (the manager's metrics serve a self-signed one)")
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("do: want exactly one URL")
	}
	client := &http.Client{Timeout: 15 * time.Second}
	if *insecure {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // -k is asked for by name
	}
	enc := json.NewEncoder(os.Stdout)
	for range *count {
		var rb io.Reader
		if *body != "" {
			rb = strings.NewReader(*body)
		}
		req, err := http.NewRequest(*method, fs.Arg(0), rb)
		if err != nil {
			return err
		}
		if err := headers.apply(req); err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		if err := enc.Encode(Response{Status: resp.StatusCode, Headers: resp.Header, Body: string(data)}); err != nil {
			return err
		}
		if *until != 0 && resp.StatusCode == *until {
			break
		}
	}
	return nil
}

// Outcome counts what one URL answered during a load.
type Outcome struct {
	// Answers counts responses by status, with the problem type appended for
	// problem+json answers ("503 https://gatehouse.dev/problems/…").
	Answers map[string]int `json:"answers"`
	// Errors counts requests that got no HTTP response, by error.
	Errors map[string]int `json:"errors,omitempty"`
}

// Summary is what load prints.
type Summary struct {
	Requests int                 `json:"requests"`
	Seconds  float64             `json:"seconds"`
	URLs     map[string]*Outcome `json:"urls"`
	// Failures lists the first non-2xx answers and errors, with the time
	// since the start, to see when a fault hit and when it healed.
	Failures []string `json:"failures,omitempty"`
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	rate := fs.Int("rate", 20, "requests per second, over all URLs")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls := fs.Args()
	if len(urls) == 0 || *rate <= 0 {
		return errors.New("load: want a positive --rate and at least one URL")
	}
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
	}
	sum := Summary{URLs: map[string]*Outcome{}}
	for _, u := range urls {
		sum.URLs[u] = &Outcome{Answers: map[string]int{}, Errors: map[string]int{}}
	}
	var mu sync.Mutex
	record := func(u string, since time.Duration, answer string, err error) {
		mu.Lock()
		defer mu.Unlock()
		o := sum.URLs[u]
		failed := err != nil || !strings.HasPrefix(answer, "2")
		if err != nil {
			o.Errors[err.Error()]++
			answer = err.Error()
		} else {
			o.Answers[answer]++
		}
		if failed && len(sum.Failures) < 50 {
			sum.Failures = append(sum.Failures, fmt.Sprintf("%6.2fs %s: %s", since.Seconds(), u, answer))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			sum.Requests = i
			sum.Seconds = time.Since(start).Seconds()
			return json.NewEncoder(os.Stdout).Encode(sum)
		case <-tick.C:
		}
		u := urls[i%len(urls)]
		wg.Go(func() {
			answer, err := once(client, u, headers)
			record(u, time.Since(start), answer, err)
		})
	}
}

// once sends one GET and names its answer.
func once(client *http.Client, u string, headers headerFlags) (string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if err := headers.apply(req); err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read body after %d: %w", resp.StatusCode, err)
	}
	answer := strconv.Itoa(resp.StatusCode)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(data, &p) == nil && p.Type != "" {
			answer += " " + p.Type
		}
	}
	return answer, nil
}
