package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/engine"
	"github.com/holdfast/holdfast/internal/overlay"
)

// Server answers the agents of one cloud.
type Server struct {
	StateDir, Cloud string
	// State is the state the last apply made (FileState of deploy's
	// applied state file).
	State       func() (*compile.State, error)
	Credentials *Credentials
	Reports     *Reports
	Log         *slog.Logger
	// Tune, when set, adjusts each member's Nebula config (intervals).
	Tune func(*overlay.NodeConfig)
	Now  func() time.Time
	// AgentBinary is the holdfast binary the metadata service hands to
	// instances (nocloud.go); empty: the running executable.
	AgentBinary string
}

// maxHealthBody bounds a health report.
const maxHealthBody = 64 << 10

type localConnKey struct{}

// Serve answers on ln until ctx ends. Requests through a unix socket are
// identified by their token alone; through TCP, also by their address.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if _, ok := c.(*net.UnixConn); ok {
				return context.WithValue(ctx, localConnKey{}, true)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Handler is the agent API. Behind Serve it knows which connections are
// local; used alone (in another server), every request is checked by its
// address too.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/config", s.config)
	mux.HandleFunc("POST /v1/agent/health", s.health)
	s.noCloudRoutes(mux)
	return mux
}

// caller identifies the instance an agent's request is from: its bearer
// token, and its address unless it came through the local socket.
func (s *Server) caller(r *http.Request) (*compile.State, compile.Instance, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, compile.Instance{}, false
	}
	local, _ := r.Context().Value(localConnKey{}).(bool)
	return s.instanceOf(r, token, local)
}

// instanceOf is the instance whose current token this is, when the request
// comes from one of its addresses or, with anyAddress, from anywhere.
func (s *Server) instanceOf(r *http.Request, token string, anyAddress bool) (*compile.State, compile.Instance, bool) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return nil, compile.Instance{}, false
	}
	st, err := s.State()
	if err != nil {
		s.log().Warn("guest: no applied state", "err", err)
		return nil, compile.Instance{}, false
	}
	id, in, ok := Identify(s.Credentials, st, token)
	if !ok {
		return nil, compile.Instance{}, false
	}
	if !anyAddress && !FromInstance(r.RemoteAddr, in) {
		s.log().Warn("guest: an instance's token from another address", "instance", id.String(), "from", r.RemoteAddr)
		return nil, compile.Instance{}, false
	}
	return st, in, true
}

// Identify finds the instance of st whose token this is.
func Identify(c *Credentials, st *compile.State, token string) (compile.ID, compile.Instance, bool) {
	ids := make([]compile.ID, len(st.Instances))
	for i, in := range st.Instances {
		ids[i] = compile.InstanceID(in.Site, in.Name)
	}
	id, ok := c.Identify(token, ids)
	if !ok {
		return id, compile.Instance{}, false
	}
	for _, in := range st.Instances {
		if in.Site == id.Site && in.Name == id.Name {
			return id, in, true
		}
	}
	return id, compile.Instance{}, false
}

// FromInstance reports whether remoteAddr (host:port) is one of the
// instance's own addresses.
func FromInstance(remoteAddr string, in compile.Instance) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, nic := range in.NICs {
		if ip, err := netip.ParseAddr(nic.IP); err == nil && ip == a {
			return true
		}
	}
	return false
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast agent"`)
	problem(w, http.StatusUnauthorized, "not an agent of this cloud", "the token names no instance, or the request is not from its address")
}

func problem(w http.ResponseWriter, code int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": code, "detail": detail})
}

// MaxWait bounds how long a request for the configuration waits for a
// change (?wait=): under the agent's client timeout, and short enough that
// it reports its health well within StaleAfter.
const MaxWait = 20 * time.Second

// config answers the instance's configuration. With If-None-Match naming
// the current version and ?wait=D (at most MaxWait), it waits for a change
// before answering 304: an agent learns of an apply at once, without
// polling often.
func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			problem(w, http.StatusBadRequest, "wait is not a duration", "for example ?wait=20s")
			return
		}
		wait = min(d, MaxWait)
	}
	deadline := s.now().Add(wait)
	for {
		// Every round authenticates again: a rotated token ends the wait.
		st, in, ok := s.caller(r)
		if !ok {
			unauthorized(w)
			return
		}
		id := compile.InstanceID(in.Site, in.Name)
		seen := s.inputs(st, id)
		c, err := Build(s.StateDir, st, id, s.Tune)
		if err != nil {
			s.log().Error("guest: config", "instance", id.String(), "err", err)
			problem(w, http.StatusInternalServerError, "the configuration could not be made", "see the control plane's log")
			return
		}
		etag := `"` + c.Version() + `"`
		if r.Header.Get("If-None-Match") != etag {
			w.Header().Set("ETag", etag)
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(c)
			return
		}
		if !s.awaitChange(r.Context(), st, id, seen, deadline) {
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
}

// inputs names the files an instance's configuration is made from as they
// are now (the applied state, the generations, the overlay's blocklist and
// the member's certificate): when it changes, the configuration may have.
func (s *Server) inputs(st *compile.State, id compile.ID) string {
	files := []string{
		AppliedFile(s.StateDir, st.Cloud),
		filepath.Join(Dir(s.StateDir, st.Cloud), "generations.json"),
		filepath.Join(overlay.Dir(s.StateDir, st.Cloud), "blocklist.json"),
		filepath.Join(overlay.Dir(s.StateDir, st.Cloud), "members", id.Site, id.Name+".crt"),
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			b.WriteString("-;")
			continue
		}
		fmt.Fprintf(&b, "%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String()
}

// awaitChange waits until the instance's inputs differ from seen (true),
// or until deadline or the request ends (false). It looks every
// changePoll: a few stat calls.
func (s *Server) awaitChange(ctx context.Context, st *compile.State, id compile.ID, seen string, deadline time.Time) bool {
	t := time.NewTicker(changePoll)
	defer t.Stop()
	for s.now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if s.inputs(st, id) != seen {
			return true
		}
	}
	return false
}

// changePoll is how often a waiting request looks at its inputs.
const changePoll = 100 * time.Millisecond

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	_, in, ok := s.caller(r)
	if !ok {
		unauthorized(w)
		return
	}
	var h Health
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHealthBody))
	if err := dec.Decode(&h); err != nil {
		problem(w, http.StatusBadRequest, "not a health report", err.Error())
		return
	}
	rep := Report{Health: h, Received: s.now().UTC()}
	if local, _ := r.Context().Value(localConnKey{}).(bool); !local {
		rep.From = r.RemoteAddr
	}
	if err := s.Reports.Put(compile.InstanceID(in.Site, in.Name), rep); err != nil {
		s.log().Error("guest: keeping a health report", "instance", in.Name, "err", err)
		problem(w, http.StatusInternalServerError, "the report could not be kept", "see the control plane's log")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ListenSocket listens on the guest service's unix socket in dir (made
// 0700 if missing), replacing a socket a stopped server left behind. Only
// root, and the instances the local engine binds dir into, reach it.
func ListenSocket(dir string) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, engine.SocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return net.Listen("unix", path)
}
