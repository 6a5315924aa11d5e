// Command grpcapp is the gRPC app of the e2e cluster: gRPC's own interop
// TestService and the standard health service on one h2c port, as a gRPC
// server serves them (HTTP/2 only: it cannot read HTTP/1.1), behind the
// injected sidecar (docs/grpc.md).
//
//	grpcapp serve [--listen :9090]
//	grpcapp admin METHOD PATH [BODY]
//
// Every call answers in its trailers what reached the app: the subject and
// tenant claim the sidecar forwarded (saw-subject, saw-tenant), whether an
// authorization token did (saw-authorization), and a trailer of the app's
// own (x-trailer), which must cross the sidecar. admin is what an app does
// after its own login step: it calls the sidecar's admin API over the Unix
// socket the webhook shares with every app container
// (/var/run/gatehouse/admin.sock), and prints the status and body.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcapp serve [--listen :9090] | admin METHOD PATH [BODY]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "admin":
		err = admin(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want serve or admin", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcapp:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":9090", "address the gRPC server serves on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, testService{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintln(os.Stderr, "grpcapp: serving on", l.Addr())
	return srv.Serve(l)
}

// testService answers UnaryCall and StreamingOutputCall; the other methods
// stay unimplemented.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

// report puts what reached the app into the call's trailers: the subject
// and tenant claim the sidecar forwarded, and whether a token reached the
// app (it must not: the sidecar keeps it, docs/grpc.md).
func report(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(key string) string {
		if v := md.Get(key); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs(
		"saw-subject", first(contract.SubjectHeader),
		"saw-tenant", first(contract.ClaimHeaderPrefix+"tenant"),
		"saw-authorization", strconv.FormatBool(len(md.Get("authorization")) > 0),
		"x-trailer", "from-the-app",
	))
}

func (testService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	report(ctx)
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'u'}, int(in.GetResponseSize()))}}, nil
}

func (testService) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	report(stream.Context())
	for _, p := range in.GetResponseParameters() {
		time.Sleep(time.Duration(p.GetIntervalUs()) * time.Microsecond)
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'s'}, int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	return nil
}

// admin calls the sidecar's admin API over the shared socket.
func admin(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return errors.New("admin: want METHOD PATH [BODY]")
	}
	var body io.Reader
	if len(args) == 3 {
		body = strings.NewReader(args[2])
	}
	_, socket := contract.Listen(contract.UnixPrefix + contract.AdminSocket)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	// The host is only a label: the dialer goes to the socket.
	req, err := http.NewRequest(args[0], "http://gatehouse"+args[1], body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API on %s: %w", socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	fmt.Println(resp.StatusCode)
	_, err = os.Stdout.Write(data)
	return err
}
