package grpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/docstest"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/internal/render"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// The orders service of docs/grpc.md, registered by hand: its messages are
// the protobuf wrappers, so no generated code is needed, as the doc says.
var ordersService = grpc.ServiceDesc{
	ServiceName: "shop.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "CreateOrder",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := &wrapperspb.StringValue{}
			if err := dec(in); err != nil {
				return nil, err
			}
			md, _ := metadata.FromIncomingContext(ctx)
			// The client's own metadata reach the app too, but not the
			// session token it carries in authorization (docs/grpc.md).
			if first(md, "authorization") != "" || first(md, "x-tenant") == "" {
				return nil, status.Error(codes.FailedPrecondition, "the client's metadata did not arrive as documented")
			}
			return wrapperspb.String(fmt.Sprintf("order of %s for %s@%s", in.GetValue(),
				first(md, "x-gatehouse-subject"), first(md, "x-gatehouse-claim-tenant"))), nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "WatchOrders",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			in := &wrapperspb.StringValue{}
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			for i := range 3 {
				if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("event %d", i))); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

// The worked example of docs/grpc.md, as written: its policies rendered by
// the operator's renderer, for the pod labels of its Deployment, enforced
// by the real sidecar in front of its service; every row of "Calling it".
func TestDocsWorkedExample(t *testing.T) {
	var deploy appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(strings.SplitN(docstest.Block(t, "../../docs/grpc.md", "grpc.md:deployment"), "\n---\n", 2)[0]), &deploy); err != nil {
		t.Fatalf("the documented Deployment: %v", err)
	}
	in := render.Input{Namespace: "shop", RedisClusters: []v1alpha1.RedisCluster{{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-redis", Namespace: "shop"},
		Status: v1alpha1.RedisClusterStatus{Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonClusterReady,
		}}},
	}}}
	for obj := range strings.SplitSeq(docstest.Block(t, "../../docs/grpc.md", "grpc.md:policies"), "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(obj), &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.Kind {
		case "SessionPolicy":
			var p v1alpha1.SessionPolicy
			if err := yaml.UnmarshalStrict([]byte(obj), &p); err != nil {
				t.Fatalf("the documented SessionPolicy: %v", err)
			}
			in.Sessions = append(in.Sessions, p)
		case "RateLimitPolicy":
			var p v1alpha1.RateLimitPolicy
			if err := yaml.UnmarshalStrict([]byte(obj), &p); err != nil {
				t.Fatalf("the documented RateLimitPolicy: %v", err)
			}
			in.RateLimits = append(in.RateLimits, p)
		default:
			t.Fatalf("unexpected kind %q in the policies block", tm.Kind)
		}
	}
	res, err := render.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range res.Verdicts {
		if !v.Accepted {
			t.Fatalf("%s %s not accepted: %s", k.Kind, k.Name, v.Message)
		}
	}
	if len(res.Config.Sessions) != 1 || len(res.Config.RateLimits) != 1 {
		t.Fatalf("rendered %d session and %d rate-limit policies, want 1 and 1", len(res.Config.Sessions), len(res.Config.RateLimits))
	}

	// The RedisCluster becomes a local redis-server; nothing else changes.
	redis := redistest.StartStandalone(t)
	cfg := res.Config
	cfg.Redis = []config.RedisConnection{{Name: cfg.Redis[0].Name, Mode: config.RedisStandalone, Addrs: []string{redis.Addr()},
		DialTimeout: config.Duration(200 * time.Millisecond), ReadTimeout: config.Duration(200 * time.Millisecond), WriteTimeout: config.Duration(200 * time.Millisecond)}}
	docJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	labels := filepath.Join(t.TempDir(), "labels")
	var lines []string
	for k, v := range deploy.Spec.Template.Labels {
		lines = append(lines, k+"="+strconv.Quote(v))
	}
	if err := os.WriteFile(labels, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	app := startOrdersApp(t)
	s := startSidecar(t, app, docJSON, "--upstream-protocol", "h2c", "--pod-labels", labels)
	cc := dial(t, s.data)
	token := mintSession(t, s, map[string]string{"tenant": "acme"})
	call := func(ctx context.Context, hdr, tr *metadata.MD) (string, error) {
		var out wrapperspb.StringValue
		err := cc.Invoke(ctx, "/shop.v1.Orders/CreateOrder", wrapperspb.String("book"), &out, grpc.Header(hdr), grpc.Trailer(tr))
		return out.GetValue(), err
	}
	authed := func(tenant string) context.Context {
		return metadata.AppendToOutgoingContext(ctxTimeout(t, 30*time.Second), "authorization", "Bearer "+token, "x-tenant", tenant)
	}

	var hdr, tr metadata.MD
	t.Run("CreateOrder without authorization", func(t *testing.T) {
		_, err := call(ctxTimeout(t, 10*time.Second), &hdr, &tr)
		md := metadata.Join(hdr, tr)
		if codeOf(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "Session required: ") ||
			first(md, "www-authenticate") != `Bearer realm="gatehouse"` {
			t.Errorf("got %v with %v", err, md)
		}
	})
	t.Run("CreateOrder with an unknown token", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second), "authorization", "Bearer gh2.unknown.token")
		_, err := call(ctx, &hdr, &tr)
		md := metadata.Join(hdr, tr)
		if codeOf(err) != codes.Unauthenticated || !strings.Contains(first(md, "www-authenticate"), `error="invalid_token"`) {
			t.Errorf("got %v with %v", err, md)
		}
	})
	t.Run("health without a token", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(cc).Check(ctxTimeout(t, 10*time.Second), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("got %v %v", resp, err)
		}
	})
	t.Run("calls 1-100, call 101, another tenant", func(t *testing.T) {
		got, err := call(authed("acme"), &hdr, &tr)
		if err != nil {
			t.Fatal(err)
		}
		// A fixed 1m window is aligned to the minute: start in a fresh one
		// if this one ends before the 100 calls could be made.
		if reset, _ := strconv.Atoi(rateLimit(hdr, "t")); reset < 20 {
			time.Sleep(time.Duration(reset+1) * time.Second)
			if got, err = call(authed("acme"), &hdr, &tr); err != nil {
				t.Fatal(err)
			}
		}
		if got != "order of book for alice@acme" {
			t.Errorf("the app answered %q: it did not see the subject and tenant claim", got)
		}
		if !strings.Contains(first(hdr, "ratelimit-policy"), ";q=100;w=60") || rateLimit(hdr, "r") != "99" {
			t.Errorf("header metadata of call 1: %v", hdr)
		}
		for i := 2; i <= 100; i++ {
			if _, err := call(authed("acme"), &hdr, &tr); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if rateLimit(hdr, "r") != "0" {
			t.Errorf("ratelimit r of call 100 = %q", rateLimit(hdr, "r"))
		}
		_, err = call(authed("acme"), &hdr, &tr)
		md := metadata.Join(hdr, tr)
		ra, _ := strconv.Atoi(first(md, "retry-after"))
		pb, _ := strconv.Atoi(first(md, "grpc-retry-pushback-ms"))
		if codeOf(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "Too many requests: ") ||
			rateLimit(md, "r") != "0" || ra < 1 || pb != ra*1000 {
			t.Errorf("call 101: %v with %v", err, md)
		}
		if _, err := call(authed("globex"), &hdr, &tr); err != nil {
			t.Errorf("call 101 for globex: %v", err)
		}
		stream, err := cc.NewStream(authed("acme"), &grpc.StreamDesc{ServerStreams: true}, "/shop.v1.Orders/WatchOrders")
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(wrapperspb.String("acme")); err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		n := 0
		for {
			var ev wrapperspb.StringValue
			if err := stream.RecvMsg(&ev); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("WatchOrders after the limit: %v", err)
				}
				break
			}
			n++
		}
		if n != 3 {
			t.Errorf("WatchOrders: %d events, want 3", n)
		}
	})
	t.Run("RedisCluster unreachable", func(t *testing.T) {
		if err := redis.Kill(); err != nil {
			t.Fatal(err)
		}
		// The session is checked first: a required session answers
		// Unavailable; on a public path the rate limit would. The
		// sidecar's in-process session tier serves the session it holds
		// until its revocation subscription is lost or silent for 750ms
		// (docs/sessions.md); meanwhile acme's limit still answers.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := call(authed("acme"), &hdr, &tr)
			if codeOf(err) == codes.Unavailable && strings.Contains(err.Error(), "Session store unavailable: ") {
				break
			}
			if codeOf(err) != codes.ResourceExhausted || time.Now().After(deadline) {
				t.Fatalf("got %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func startOrdersApp(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	srv.RegisterService(&ordersService, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}
