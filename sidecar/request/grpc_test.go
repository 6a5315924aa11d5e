package request

import (
	"net/http"
	"testing"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// A gRPC call's path is /<package>.<Service>/<Method> (PROTOCOL-HTTP2.md:
// "Path → ":path" "/" Service-Name "/" {method name}"), with the package's
// dots inside the first segment. The normaliser must leave every such path
// exactly as sent: the app's gRPC server routes on the bytes, and a rule's
// pathPrefix is written the same way.
func TestGRPCPathsAreKeptAsSent(t *testing.T) {
	for _, p := range []string{
		"/grpc.health.v1.Health/Check",
		"/grpc.health.v1.Health/Watch",
		"/grpc.testing.TestService/UnaryCall",
		"/shop.v1.Orders/CreateOrder",
		"/Greeter/SayHello", // no package
		"/com.example.api.v2beta1.Billing_Service/Charge_Card2",
		"/a.b.c.d.e.F/G",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	} {
		t.Run(p, func(t *testing.T) {
			r := normalised(t, http.MethodPost, p, Options{}, http.Header{"Content-Type": {"application/grpc"}})
			if r == nil {
				t.Fatal("refused")
			}
			if r.URL.Path != p || r.URL.EscapedPath() != p || Path(r) != p {
				t.Errorf("Path %q, escaped %q, match path %q: want %q unchanged", r.URL.Path, r.URL.EscapedPath(), Path(r), p)
			}
		})
	}
}

// Rule prefixes for a service and for one method (docs/grpc.md).
func TestGRPCServiceAndMethodPrefixes(t *testing.T) {
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/shop.v1.Orders/", "/shop.v1.Orders/CreateOrder", true},
		{"/shop.v1.Orders/", "/shop.v1.OrdersAdmin/Purge", false},
		{"/shop.v1.Orders/CreateOrder", "/shop.v1.Orders/CreateOrder", true},
		{"/shop.v1.Orders/CreateOrder", "/shop.v1.Orders/ListOrders", false},
		// A plain string prefix, as documented.
		{"/shop.v1.Orders/CreateOrder", "/shop.v1.Orders/CreateOrderBatch", true},
		{"/shop.v1.", "/shop.v1.Payments/Charge", true},
		// Method names are case-sensitive in gRPC, and so is the match.
		{"/shop.v1.Orders/createorder", "/shop.v1.Orders/CreateOrder", false},
	}
	for _, tt := range tests {
		m, err := Compile(config.Match{PathPrefix: tt.prefix}, nil)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.prefix, err)
		}
		r := normalised(t, http.MethodPost, tt.path, Options{}, nil)
		if got := m.Match(r); got != tt.want {
			t.Errorf("prefix %q on %q = %v, want %v", tt.prefix, tt.path, got, tt.want)
		}
	}
}
