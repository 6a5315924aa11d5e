// Package app is the demo's sample workload: a tiny product catalogue with a
// cart and a login endpoint, written the way an app behind Gatehouse is
// meant to be written. It keeps no sessions of its own: /login checks the
// password and asks the sidecar's admin API to mint a session, and every
// other handler trusts the X-Gatehouse-* headers the sidecar sets (the
// sidecar strips any a client sends).
package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Product is one catalogue entry.
type Product struct {
	ID    string  `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

// ProductView is what GET /products/{id} answers. Render counts the
// catalogue's renders, so a cached answer is visibly the same render.
type ProductView struct {
	Product
	Render uint64 `json:"render"`
}

// users are the demo accounts (user → password, claims).
var users = map[string]struct {
	password string
	email    string
	tier     string
}{
	"alice": {"wonderland", "alice@example.com", "gold"},
	"bob":   {"builder", "bob@example.com", "standard"},
}

// App is the catalogue. Its zero value is not usable; call New.
type App struct {
	admin   string
	client  *http.Client
	log     *slog.Logger
	renders atomic.Uint64

	mu       sync.Mutex
	products map[string]Product
}

// New returns the app. admin is the sidecar's admin API as the injected
// pod tells the app: "unix:" and the socket path in the volume the sidecar
// shares with the app (unix:/var/run/gatehouse/admin.sock), or an HTTP base
// URL when the pod opted into loopback TCP (http://127.0.0.1:9901).
func New(admin string, log *slog.Logger) *App {
	base, client := strings.TrimSuffix(admin, "/"), &http.Client{Timeout: 5 * time.Second}
	if socket, ok := strings.CutPrefix(admin, "unix:"); ok {
		// HTTP over the socket: the host in the URL is only a label.
		base = "http://gatehouse-admin"
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}
	}
	return &App{
		admin:  base,
		client: client,
		log:    log,
		products: map[string]Product{
			"41": {ID: "41", Name: "Teapot", Price: 24.50},
			"42": {ID: "42", Name: "Towel", Price: 12.00},
			"43": {ID: "43", Name: "Babel fish", Price: 99.99},
		},
	}
}

// Handler serves the app's routes.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /api/cart", a.cart)
	mux.HandleFunc("GET /products", a.listProducts)
	mux.HandleFunc("GET /products/{id}", a.getProduct)
	mux.HandleFunc("PUT /products/{id}", a.putProduct)
	return mux
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

type sessionRequest struct {
	Subject string            `json:"subject"`
	TTL     string            `json:"ttl,omitempty"`
	Claims  map[string]string `json:"claims,omitempty"`
}

type sessionResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// login checks the password and has the sidecar create the session: the
// app never stores or validates tokens itself.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"user\":…,\"password\":…}"})
		return
	}
	u, ok := users[req.User]
	if !ok || u.password != req.Password {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unknown user or wrong password"})
		return
	}
	sess, err := a.createSession(r.Context(), sessionRequest{
		Subject: u.email,
		TTL:     "30m",
		Claims:  map[string]string{"email": u.email, "tier": u.tier},
	})
	if err != nil {
		a.log.Error("Create session", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "could not create a session"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "shop_session", Value: sess.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Expires: sess.ExpiresAt})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, sess)
}

func (a *App) createSession(ctx context.Context, req sessionRequest) (sessionResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return sessionResponse{}, fmt.Errorf("encode session request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.admin+"/v1/sessions", bytes.NewReader(body))
	if err != nil {
		return sessionResponse{}, fmt.Errorf("session request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(hreq)
	if err != nil {
		return sessionResponse{}, fmt.Errorf("call sidecar admin API: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusCreated {
		return sessionResponse{}, fmt.Errorf("sidecar admin API answered %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var sess sessionResponse
	if err := json.Unmarshal(data, &sess); err != nil {
		return sessionResponse{}, fmt.Errorf("decode session: %w", err)
	}
	if sess.Token == "" {
		return sessionResponse{}, errors.New("sidecar admin API returned no token")
	}
	return sess, nil
}

// cart needs a signed-in user; the sidecar already refused requests
// without a valid session, so a missing subject here means the app is
// reachable without the sidecar, which it also refuses.
func (a *App) cart(w http.ResponseWriter, r *http.Request) {
	subject := r.Header.Get("X-Gatehouse-Subject")
	if subject == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no X-Gatehouse-Subject: not behind the sidecar?"})
		return
	}
	w.Header().Set("Cache-Control", "private, no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"subject": subject,
		"tier":    r.Header.Get("X-Gatehouse-Claim-Tier"),
		"items":   []map[string]any{{"id": "42", "qty": 1}},
	})
}

func (a *App) listProducts(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	list := make([]Product, 0, len(a.products))
	for _, id := range []string{"41", "42", "43"} {
		if p, ok := a.products[id]; ok {
			list = append(list, p)
		}
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"products": list, "render": a.renders.Add(1)})
}

func (a *App) getProduct(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	p, ok := a.products[r.PathValue("id")]
	a.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such product"})
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, ProductView{Product: p, Render: a.renders.Add(1)})
}

func (a *App) putProduct(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in Product
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want JSON {\"name\":…,\"price\":…}"})
		return
	}
	in.ID = id
	a.mu.Lock()
	a.products[id] = in
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, in)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
