package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Call is what grpc prints for each call: its status and the metadata the
// client received, as a gRPC client sees them.
type Call struct {
	Code    string      `json:"code"`
	Message string      `json:"message,omitempty"`
	Header  metadata.MD `json:"header,omitempty"`
	Trailer metadata.MD `json:"trailer,omitempty"`
	// Messages counts the response messages (one for a unary call).
	Messages int `json:"messages"`
	// Serving is the health service's answer.
	Serving string `json:"serving,omitempty"`
}

// callGRPC makes COUNT calls of one kind over one client connection, the
// way a gRPC client does, to the interop TestService or the health service
// of hack/e2e/grpcapp, and prints one JSON Call per line:
//
//	e2e-client grpc [--call unary|stream|health] [-n COUNT] [-H 'key: value']… TARGET
func callGRPC(args []string) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	kind := fs.String("call", "unary", "unary (TestService/UnaryCall), stream (TestService/StreamingOutputCall, 3 messages) or health (Health/Check)")
	count := fs.Int("n", 1, "number of calls")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each call (sent as grpc-timeout)")
	var headers headerFlags
	fs.Var(&headers, "H", "request metadata 'key: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("grpc: want exactly one target (host:port)")
	}
	var md []string
	for _, kv := range headers {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return errors.New("grpc: metadata " + kv + ": want 'key: value'")
		}
		md = append(md, strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	cc, err := grpc.NewClient(fs.Arg(0), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	enc := json.NewEncoder(os.Stdout)
	for range *count {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
		c, err := oneCall(ctx, cc, *kind)
		cancel()
		if err != nil {
			return err
		}
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

func oneCall(ctx context.Context, cc *grpc.ClientConn, kind string) (Call, error) {
	var c Call
	var err error
	switch kind {
	case "unary":
		_, err = testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 16},
			grpc.Header(&c.Header), grpc.Trailer(&c.Trailer))
		if err == nil {
			c.Messages = 1
		}
	case "stream":
		var st grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse]
		st, err = testgrpc.NewTestServiceClient(cc).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 8}, {Size: 8, IntervalUs: 100_000}, {Size: 8}},
		})
		if err != nil {
			break
		}
		for {
			if _, err = st.Recv(); err != nil {
				break
			}
			c.Messages++
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		c.Header, _ = st.Header()
		c.Trailer = st.Trailer()
	case "health":
		var resp *healthpb.HealthCheckResponse
		resp, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{},
			grpc.Header(&c.Header), grpc.Trailer(&c.Trailer))
		if err == nil {
			c.Messages = 1
			c.Serving = resp.GetStatus().String()
		}
	default:
		return c, errors.New("grpc: --call " + kind + ": want unary, stream or health")
	}
	// Every outcome, the app's or the sidecar's, is a gRPC status: that is
	// what the scenario checks, so an error is printed, not returned.
	s := status.Convert(err)
	c.Code, c.Message = s.Code().String(), s.Message()
	return c, nil
}
