package grpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// sessionDoc: every TestService method needs a session, the health service
// is public, the tenant claim is forwarded.
func sessionDoc(t *testing.T, redisAddr string, extra map[string]any) []byte {
	s := meta("sessions")
	s["token"] = map[string]any{}
	s["ttl"] = "1h"
	s["sliding"] = true
	s["requireFor"] = []string{"/grpc.testing.TestService/"}
	s["forwardClaims"] = []string{"tenant"}
	sections := map[string]any{"redis": redisSection(redisAddr), "sessions": []any{s}}
	maps.Copy(sections, extra)
	return doc(t, sections)
}

// Every RPC kind crosses the sidecar with its messages, its metadata and
// its trailers: unary, server streaming, client streaming, bidirectional.
func TestEveryRPCKindWithTrailers(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), nil), "--upstream-protocol", "h2c")
	token := mintSession(t, s, map[string]string{"tenant": "acme"})
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	ctx := withToken(ctxTimeout(t, 30*time.Second), token)

	// checkTrailer asserts what the app saw, as it reported in trailers.
	checkTrailer := func(t *testing.T, tr metadata.MD, method string) {
		t.Helper()
		// The session token stays with the sidecar (forwardToken unset):
		// the app sees no authorization metadata, only the subject.
		want := map[string]string{mdTrailer: "from-the-app", mdSawSubject: "alice", mdSawTenant: "acme", mdSawPath: method,
			mdSawAuth: ""}
		for k, v := range want {
			if got := tr.Get(k); len(got) != 1 || got[0] != v {
				t.Errorf("trailer %s = %q, want %q", k, got, v)
			}
		}
	}

	t.Run("unary", func(t *testing.T) {
		var tr metadata.MD
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 256 << 10, Payload: payload(100 << 10)}, grpc.Trailer(&tr))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetPayload().GetBody()); n != 256<<10 {
			t.Errorf("response payload %d bytes, want 256 KiB", n)
		}
		checkTrailer(t, tr, "UnaryCall")
	})

	t.Run("unary with an application error keeps its status and message", func(t *testing.T) {
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such order ✓"}})
		if codeOf(err) != codes.NotFound || !strings.Contains(err.Error(), "no such order ✓") {
			t.Errorf("got %v, want the app's NotFound", err)
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		var params []*testgrpc.ResponseParameters
		for i := range 50 {
			params = append(params, &testgrpc.ResponseParameters{Size: int32(1000 + i)})
		}
		stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				if i != 50 {
					t.Errorf("got %d messages, want 50", i)
				}
				break
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if len(m.GetPayload().GetBody()) != 1000+i {
				t.Fatalf("message %d has %d bytes", i, len(m.GetPayload().GetBody()))
			}
		}
		checkTrailer(t, stream.Trailer(), "StreamingOutputCall")
	})

	t.Run("client streaming", func(t *testing.T) {
		stream, err := c.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for i := range 100 {
			n := 10_000 + i
			want += n
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(int32(n))}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if got := int(resp.GetAggregatedPayloadSize()); got != want {
			t.Errorf("the app received %d bytes, want %d", got, want)
		}
		checkTrailer(t, stream.Trailer(), "StreamingInputCall")
	})

	t.Run("bidirectional ping-pong", func(t *testing.T) {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Each reply is awaited before the next request: a sidecar that
		// buffered either direction would deadlock here.
		for i := range 100 {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: int32(i + 1)}}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if len(m.GetPayload().GetBody()) != i+1 {
				t.Fatalf("reply %d has %d bytes", i, len(m.GetPayload().GetBody()))
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v, want EOF", err)
		}
		checkTrailer(t, stream.Trailer(), "FullDuplexCall")
	})

	t.Run("the public health service needs no session", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(dial(t, s.data)).Check(ctxTimeout(t, 10*time.Second), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check: %v %v", resp, err)
		}
	})
}

// Flow control is HTTP/2's, end to end: a client that stops reading a
// server stream stops the app's sends after a bounded amount, rather than
// the sidecar reading the whole stream into memory.
func TestFlowControlHoldsBackTheApp(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app, svc := startAppService(t)
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), nil), "--upstream-protocol", "h2c")
	token := mintSession(t, s, nil)
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	ctx, cancel := context.WithCancel(withToken(context.Background(), token))
	defer cancel()

	// 512 messages of 256 KiB: 128 MiB if nothing pushed back.
	const n, size = 512, 256 << 10
	params := make([]*testgrpc.ResponseParameters, n)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: size}
	}
	stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// The client now reads nothing. The windows on the way fill — the
	// client's receive window (grpc-go grows it up to 16 MiB), the
	// sidecar's from the app (4 MiB per stream), socket buffers — and then
	// the app's Send blocks. Wait until it has stopped making progress.
	last := svc.sent.Load()
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		now := svc.sent.Load()
		if now == last {
			break
		}
		last = now
	}
	if sent := last * size; sent > 48<<20 {
		t.Errorf("the app sent %d MiB to a client that reads nothing: the sidecar is buffering the stream", sent>>20)
	}
	t.Logf("the app was held back after %d of %d messages (%d MiB)", last, n, last*size>>20)
	got := 1
	for {
		if _, err := stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		got++
	}
	if got != n {
		t.Errorf("received %d messages, want %d", got, n)
	}
}

// Long-lived streams that make progress are never cut by the sidecar's
// deadlines, however long they run: here every deadline is shortened to a
// second (--upstream-header-timeout=1s, proxy.writeTimeout and
// proxy.bodyReadTimeout 1s) and each stream runs several times as long,
// with quiet gaps longer than the deadlines between messages — a watch
// stream's normal life. A client-streaming call is the sharpest case: the
// app sends its response headers only once the client half-closes, seconds
// after the call began, and the client sends nothing for 1.5 s at a time.
func TestLongStreamsAreNotCutByShortDeadlines(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	short := map[string]any{"proxy": map[string]any{"writeTimeout": "1s", "bodyReadTimeout": "1s"}}
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), short), "--upstream-protocol", "h2c", "--upstream-header-timeout", "1s")
	token := mintSession(t, s, nil)
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	ctx := withToken(ctxTimeout(t, 60*time.Second), token)
	const gap, total = 1500 * time.Millisecond, 6 * time.Second

	var wg sync.WaitGroup
	wg.Go(func() {
		// The first message comes at once: grpc-go sends a stream's
		// headers with it, and the header timeout bounds the wait for
		// headers (docs/grpc.md). Then 1.5 s of silence between messages.
		params := []*testgrpc.ResponseParameters{{Size: 10}}
		for range int(total / gap) {
			params = append(params, &testgrpc.ResponseParameters{Size: 10, IntervalUs: int32(gap / time.Microsecond)})
		}
		stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Error(err)
			return
		}
		n := 0
		for {
			if _, err := stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("server stream cut after %d messages: %v", n, err)
				} else if n != len(params) {
					t.Errorf("server stream: %d messages, want %d", n, len(params))
				}
				return
			}
			n++
		}
	})
	wg.Go(func() {
		stream, err := c.StreamingInputCall(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for i := range int(total / gap) {
			time.Sleep(gap)
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: payload(10)}); err != nil {
				t.Errorf("client stream cut at message %d: %v", i, err)
				return
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Errorf("client stream: %v", err)
			return
		}
		if got, want := resp.GetAggregatedPayloadSize(), int32(10*int(total/gap)); got != want {
			t.Errorf("client stream: app received %d bytes, want %d", got, want)
		}
	})
	wg.Go(func() {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for i := range int(total / gap) {
			time.Sleep(gap)
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}}); err != nil {
				t.Errorf("bidi stream cut at send %d: %v", i, err)
				return
			}
			if _, err := stream.Recv(); err != nil {
				t.Errorf("bidi stream cut at reply %d: %v", i, err)
				return
			}
		}
		_ = stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("bidi end: %v", err)
		}
	})
	wg.Wait()

	t.Run("but an app that never answers a unary call is cut at the header timeout", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(ctx, mdSleep, "5000")
		start := time.Now()
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		if codeOf(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded from the sidecar's upstream timeout", err)
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("answered after %v: the 1s header timeout did not apply (app sleeps 5s)", took)
		}
	})
}

// A call without a session, or with a token the store does not know, is
// answered UNAUTHENTICATED, as the gRPC client's own status.
func TestUnauthenticatedCalls(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), nil), "--upstream-protocol", "h2c")
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	for name, ctx := range map[string]context.Context{
		"no token":      ctxTimeout(t, 10*time.Second),
		"unknown token": withToken(ctxTimeout(t, 10*time.Second), "gh1.bm90LWEtcmVhbC10b2tlbg"),
		"wrong scheme":  metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "authorization", "Basic YWxpY2U6cHc="),
	} {
		t.Run(name, func(t *testing.T) {
			var hdr metadata.MD
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&hdr))
			if codeOf(err) != codes.Unauthenticated {
				t.Fatalf("got %v, want Unauthenticated", err)
			}
			if !strings.Contains(err.Error(), "Session required") {
				t.Errorf("message %q: want the sidecar's reason", err)
			}
			if len(hdr.Get("www-authenticate")) == 0 {
				t.Errorf("no www-authenticate metadata (the Bearer challenge): %v", hdr)
			}
		})
	}
	t.Run("streams too", func(t *testing.T) {
		stream, err := c.FullDuplexCall(ctxTimeout(t, 10*time.Second))
		if err == nil {
			_, err = stream.Recv()
		}
		if codeOf(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	})
}

// A RateLimitPolicy rule on one gRPC method (pathPrefix
// /grpc.testing.TestService/UnaryCall) keyed by a metadata value (x-tenant)
// admits 100 calls per window and answers the 101st RESOURCE_EXHAUSTED,
// with the RateLimit fields and the retry delay as metadata. Other methods
// and other tenants are untouched.
func TestPerMethodRateLimit(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	rl := meta("limits")
	rl["rules"] = []any{map[string]any{
		"name": "unary-per-tenant", "match": map[string]any{"pathPrefix": "/grpc.testing.TestService/UnaryCall"},
		"key": map[string]any{"header": "x-tenant"}, "limit": 100, "window": "1h",
		"algorithm": "FixedWindow", "mode": "Enforce", "failureMode": "Closed",
	}}
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), map[string]any{"rateLimits": []any{rl}}), "--upstream-protocol", "h2c")
	token := mintSession(t, s, nil)
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	tenant := func(name string) context.Context {
		return metadata.AppendToOutgoingContext(withToken(ctxTimeout(t, 60*time.Second), token), "x-tenant", name)
	}
	acme := tenant("acme")

	// A fixed window is aligned to the hour: start in a fresh one if this
	// one ends before the test could make its calls.
	var hdr metadata.MD
	if _, err := c.UnaryCall(acme, &testgrpc.SimpleRequest{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if reset, _ := strconv.Atoi(rateLimit(hdr, "t")); reset < 60 {
		t.Logf("window ends in %ds; waiting for the next one", reset)
		time.Sleep(time.Duration(reset+1) * time.Second)
		if _, err := c.UnaryCall(acme, &testgrpc.SimpleRequest{}, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
	}
	if got := rateLimit(hdr, "r"); got != "99" {
		t.Errorf("ratelimit r after the first call = %q, want 99 (headers %v)", got, hdr)
	}
	for i := 2; i <= 100; i++ {
		if _, err := c.UnaryCall(acme, &testgrpc.SimpleRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	var tr metadata.MD
	_, err := c.UnaryCall(acme, &testgrpc.SimpleRequest{}, grpc.Header(&hdr), grpc.Trailer(&tr))
	if codeOf(err) != codes.ResourceExhausted {
		t.Fatalf("call 101: %v, want ResourceExhausted", err)
	}
	md := metadata.Join(hdr, tr)
	for _, k := range []string{"ratelimit", "ratelimit-policy", "retry-after", "grpc-retry-pushback-ms"} {
		if len(md.Get(k)) == 0 {
			t.Errorf("call 101: no %s metadata (got %v)", k, md)
		}
	}
	if rateLimit(md, "r") != "0" {
		t.Errorf("ratelimit r %q, want 0", rateLimit(md, "r"))
	}
	ra, _ := strconv.Atoi(first(md, "retry-after"))
	pb, _ := strconv.Atoi(first(md, "grpc-retry-pushback-ms"))
	if ra < 1 || pb != ra*1000 {
		t.Errorf("retry-after %d s, grpc-retry-pushback-ms %d: want the same positive delay", ra, pb)
	}

	if _, err := c.EmptyCall(acme, &testgrpc.Empty{}); err != nil {
		t.Errorf("another method of the service: %v, want it untouched by the UnaryCall limit", err)
	}
	if _, err := c.UnaryCall(tenant("globex"), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("another tenant: %v, want its own counter", err)
	}
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

// rateLimit is parameter p (r: remaining, t: seconds to reset) of the first
// member of the RateLimit metadata, the draft's structured field
// (`"policy/rule";r=99;t=42`); "" when absent.
func rateLimit(md metadata.MD, p string) string {
	member, _, _ := strings.Cut(first(md, "ratelimit"), ",")
	for _, kv := range strings.Split(member, ";")[1:] {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == p {
			return v
		}
	}
	return ""
}

// Redis down: a rule that fails Closed answers UNAVAILABLE (the store
// cannot vouch for the limit); so does a required session.
func TestRedisDownFailsClosedAsUnavailable(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	rl := meta("limits")
	rl["rules"] = []any{map[string]any{
		"name": "closed", "match": map[string]any{"pathPrefix": "/grpc.testing.TestService/"},
		"key": map[string]any{"clientIP": true}, "limit": 1000, "window": "1m",
		"algorithm": "SlidingWindow", "mode": "Enforce", "failureMode": "Closed",
	}}
	onlyLimits := doc(t, map[string]any{"redis": redisSection(redis.Addr()), "rateLimits": []any{rl}})
	limits := startSidecar(t, app, onlyLimits, "--upstream-protocol", "h2c")
	sessions := startSidecar(t, app, sessionDoc(t, redis.Addr(), nil), "--upstream-protocol", "h2c")
	token := mintSession(t, sessions, nil)
	lc := testgrpc.NewTestServiceClient(dial(t, limits.data))
	sc := testgrpc.NewTestServiceClient(dial(t, sessions.data))
	if _, err := lc.EmptyCall(ctxTimeout(t, 10*time.Second), &testgrpc.Empty{}); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	if _, err := sc.EmptyCall(withToken(ctxTimeout(t, 10*time.Second), token), &testgrpc.Empty{}); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}

	if err := redis.Kill(); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"rate limit failing Closed": func() error {
			_, err := lc.EmptyCall(ctxTimeout(t, 10*time.Second), &testgrpc.Empty{})
			return err
		},
		"required session": func() error {
			// The in-process session tier keeps serving the session it
			// holds until its revocation subscription is lost or silent for
			// 750ms (docs/sessions.md); then the session cannot be checked.
			deadline := time.Now().Add(3 * time.Second)
			for {
				_, err := sc.EmptyCall(withToken(ctxTimeout(t, 10*time.Second), token), &testgrpc.Empty{})
				if err != nil || time.Now().After(deadline) {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := call()
			if codeOf(err) != codes.Unavailable {
				t.Fatalf("got %v, want Unavailable", err)
			}
			// The sidecar's own answer, not an HTTP 503 the client mapped.
			if !strings.Contains(err.Error(), "unavailable: ") {
				t.Errorf("message %q: want the sidecar's reason", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("answered after %v: Redis timeouts are 200ms", took)
			}
		})
	}
}

// HTTP/1.1 and h2c clients share the data port at the same time, in front
// of an app that serves gRPC and plain HTTP on one h2c port: gRPC calls
// and streams, HTTP/1.1 requests and an HTTP/1.1 Server-Sent Events
// stream, all concurrently.
func TestHTTP1AndH2COnOnePortConcurrently(t *testing.T) {
	app := startMixedApp(t)
	s := startSidecar(t, app, doc(t, nil), "--upstream-protocol", "h2c")
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	ctx := ctxTimeout(t, 60*time.Second)
	h1 := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, ForceAttemptHTTP2: false}}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 1024}); err != nil {
					t.Errorf("gRPC unary %d/%d: %v", g, i, err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range 25 {
				resp, err := h1.Get("http://" + s.data + "/hello")
				if err != nil {
					t.Errorf("HTTP/1.1 %d/%d: %v", g, i, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || string(body) != "hello over HTTP/2.0" {
					t.Errorf("HTTP/1.1 %d/%d: %d %s %q", g, i, resp.StatusCode, resp.Proto, body)
					return
				}
			}
		})
	}
	wg.Go(func() {
		resp, err := h1.Get("http://" + s.data + "/events")
		if err != nil {
			t.Errorf("SSE: %v", err)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || strings.Count(string(body), "data: tick") != 5 {
			t.Errorf("SSE over HTTP/1.1: %q %v", body, err)
		}
	})
	wg.Go(func() {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for i := range 50 {
			if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 64}}}); err != nil {
				t.Errorf("bidi send %d: %v", i, err)
				return
			}
			if _, err := stream.Recv(); err != nil {
				t.Errorf("bidi recv %d: %v", i, err)
				return
			}
		}
		_ = stream.CloseSend()
	})
	wg.Wait()
}

// SIGTERM while streams run: the sidecar stops accepting, sends GOAWAY,
// and every stream that finishes within the drain timeout completes with
// all its messages and its OK status; the process exits cleanly.
func TestSIGTERMDuringStreams(t *testing.T) {
	redis := redistest.StartStandalone(t)
	app := startApp(t)
	s := startSidecar(t, app, sessionDoc(t, redis.Addr(), nil), "--upstream-protocol", "h2c", "--drain-timeout", "15s")
	token := mintSession(t, s, nil)
	c := testgrpc.NewTestServiceClient(dial(t, s.data))
	ctx := withToken(ctxTimeout(t, 60*time.Second), token)

	const streams, msgs = 20, 15
	started := make(chan struct{}, streams*2)
	var wg sync.WaitGroup
	errs := make(chan error, streams*2)
	for i := range streams {
		// Server streams: a message every 200 ms, 3 s in all.
		wg.Go(func() {
			params := make([]*testgrpc.ResponseParameters, msgs)
			for j := range params {
				params[j] = &testgrpc.ResponseParameters{Size: 100, IntervalUs: 200_000}
			}
			stream, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: params})
			if err != nil {
				errs <- fmt.Errorf("server stream %d: %w", i, err)
				return
			}
			n := 0
			for {
				_, err := stream.Recv()
				if n == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					errs <- fmt.Errorf("server stream %d cut after %d messages: %w", i, n, err)
					return
				}
				n++
			}
			if n != msgs {
				errs <- fmt.Errorf("server stream %d: %d messages, want %d", i, n, msgs)
			}
		})
		// Bidirectional streams that keep talking through the drain.
		wg.Go(func() {
			stream, err := c.FullDuplexCall(ctx)
			if err != nil {
				errs <- fmt.Errorf("bidi %d: %w", i, err)
				return
			}
			for j := range msgs {
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}}}); err != nil {
					errs <- fmt.Errorf("bidi %d send %d: %w", i, j, err)
					return
				}
				if _, err := stream.Recv(); err != nil {
					errs <- fmt.Errorf("bidi %d recv %d: %w", i, j, err)
					return
				}
				if j == 0 {
					started <- struct{}{}
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err := stream.CloseSend(); err != nil {
				errs <- err
				return
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				errs <- fmt.Errorf("bidi %d end: %w", i, err)
			}
		})
	}
	for range streams * 2 {
		<-started
	}
	s.terminate(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	select {
	case <-s.done:
		if s.exitErr != nil {
			t.Errorf("sidecar exited with %v after the drain, want 0", s.exitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sidecar did not exit after its streams finished")
	}

	t.Run("a new call after the drain finds no listener", func(t *testing.T) {
		_, err := testgrpc.NewTestServiceClient(dial(t, s.data)).EmptyCall(withToken(ctxTimeout(t, 5*time.Second), token), &testgrpc.Empty{})
		if codeOf(err) != codes.Unavailable {
			t.Errorf("got %v, want Unavailable", err)
		}
	})
}
