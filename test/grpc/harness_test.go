// Package grpc_test runs real gRPC (google.golang.org/grpc) servers and
// clients through the real gatehouse-sidecar binary, on a real
// redis-server: every RPC kind with its trailers, long streams under
// shortened deadlines, the gRPC answers of sessions and rate limits, Redis
// outages, and SIGTERM during streams (docs/grpc.md). Run it with
// `go test ./test/grpc/`.
package grpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/internal/sidecarbin"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// sidecarBin is the gatehouse-sidecar binary, built once as it ships.
var sidecarBin string

func TestMain(m *testing.M) { sidecarbin.Main(m, &sidecarBin) }

// Metadata the test service reports back, in its response trailers.
const (
	mdSawSubject = "saw-subject"
	mdSawTenant  = "saw-tenant"
	mdSawAuth    = "saw-authorization"
	mdSawPath    = "saw-path"
	mdTrailer    = "x-trailer"
	// mdSleep makes UnaryCall wait this many milliseconds first.
	mdSleep = "sleep-ms"
)

// testService is the app: grpc's own interop TestService, implemented so
// that every call reports in its trailers what reached the app (the
// identity metadata the sidecar forwards) and proves trailers cross the
// sidecar.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	// sent counts the messages StreamingOutputCall has handed to Send.
	sent atomic.Int64
}

func report(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs(
		mdSawSubject, first("x-gatehouse-subject"),
		mdSawTenant, first("x-gatehouse-claim-tenant"),
		mdSawAuth, first("authorization"),
		mdSawPath, method,
		mdTrailer, "from-the-app",
	))
}

func payload(n int32) *testgrpc.Payload {
	return &testgrpc.Payload{Body: bytes.Repeat([]byte{'x'}, int(n))}
}

func (*testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	report(ctx, "EmptyCall")
	return &testgrpc.Empty{}, nil
}

func (*testService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	report(ctx, "UnaryCall")
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(mdSleep); len(v) > 0 {
		ms, _ := strconv.Atoi(v[0])
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if s := in.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testgrpc.SimpleResponse{Payload: payload(in.GetResponseSize())}, nil
}

func (ts *testService) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	report(stream.Context(), "StreamingOutputCall")
	for _, p := range in.GetResponseParameters() {
		select {
		case <-time.After(time.Duration(p.GetIntervalUs()) * time.Microsecond):
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
			return err
		}
		ts.sent.Add(1)
	}
	return nil
}

func (*testService) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	report(stream.Context(), "StreamingInputCall")
	var sum int32
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(in.GetPayload().GetBody()))
	}
}

func (*testService) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	report(stream.Context(), "FullDuplexCall")
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range in.GetResponseParameters() {
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: payload(p.GetSize())}); err != nil {
				return err
			}
		}
	}
}

// startApp serves the test service and the standard health service on
// loopback, as a gRPC server does: HTTP/2 only.
func startApp(t *testing.T) string {
	addr, _ := startAppService(t)
	return addr
}

func startAppService(t *testing.T) (string, *testService) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String(), svc
}

// startMixedApp serves gRPC and plain HTTP on one h2c port, as apps that
// put a REST gateway next to their gRPC API do: gRPC calls go to the gRPC
// server (its http.Handler), /hello answers with the protocol it arrived
// over, /events is a Server-Sent Events stream of five ticks.
func startMixedApp(t *testing.T) string {
	t.Helper()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &testService{})
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello over "+r.Proto)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 5 {
			_, _ = io.WriteString(w, "data: tick\n\n")
			_ = http.NewResponseController(w).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				gs.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// sidecar is one gatehouse-sidecar process.
type sidecar struct {
	data, admin string
	cmd         *exec.Cmd
	done        chan struct{}
	exitErr     error
	logPath     string
}

// startSidecar runs the binary in front of upstream with the config doc and
// extra flags, and waits until it is ready.
func startSidecar(t *testing.T, upstream string, doc []byte, flags ...string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &sidecar{
		data:    net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t))),
		admin:   net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t))),
		done:    make(chan struct{}),
		logPath: filepath.Join(dir, "sidecar.log"),
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--config", cfg, "--listen", s.data, "--admin-listen", s.admin,
		"--upstream", "http://" + upstream, "--log-level", "info"}, flags...)
	s.cmd = exec.Command(sidecarBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			raw, _ := os.ReadFile(s.logPath)
			t.Logf("sidecar log:\n%s", raw)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + s.admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
			err = fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminate sends SIGTERM, as the kubelet does.
func (s *sidecar) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// dial opens a gRPC client connection to addr (the sidecar's data port):
// plaintext HTTP/2 with prior knowledge, as every gRPC client speaks.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// mintSession creates a session for alice through the sidecar's admin API, as the app
// would after a login, and returns its bearer token.
func mintSession(t *testing.T, s *sidecar, claims map[string]string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"subject": "alice", "claims": claims})
	resp, err := http.Post("http://"+s.admin+"/v1/sessions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d %v", resp.StatusCode, err)
	}
	return out.Token
}

// withToken carries a session token the way gRPC clients carry
// credentials: the authorization metadata.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// doc renders a sidecar config document with the given sections.
func doc(t *testing.T, sections map[string]any) []byte {
	t.Helper()
	d := map[string]any{"apiVersion": config.APIVersion, "kind": config.Kind, "hash": "grpc-test"}
	maps.Copy(d, sections)
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func redisSection(addr string) []any {
	// Short Redis timeouts: an outage is detected within a second.
	return []any{map[string]any{"name": "main", "mode": "Standalone", "addrs": []string{addr},
		"dialTimeout": "200ms", "readTimeout": "200ms", "writeTimeout": "200ms"}}
}

func meta(name string) map[string]any {
	return map[string]any{"namespace": "shop", "name": name, "selector": map[string]any{}, "redis": "main"}
}

// ctxTimeout is a context bounded by a generous limit: a call that hangs
// fails the test instead of the suite.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// codeOf is the gRPC status code of err.
func codeOf(err error) codes.Code { return status.Code(err) }
