// Package portal is Holdfast's web portal: the pages tenants and
// operators use in a browser. It is a client of the API like the CLI: a
// page reads what it shows by calling the /v1 routes in process, with
// the browser's session cookies, and every action a page offers is a
// form that its script sends to a /v1 route. So a page can show nothing
// and do nothing the caller could not do with the API, and every action
// goes through the API's validation, permissions, audit and operations.
//
// Pages are server-rendered html/template with one small script and one
// style sheet, embedded in the binary: there is no build step, nothing to
// fetch at run time, and no inline script or style, so the Content
// Security Policy can forbid both.
package portal

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/holdfast/holdfast/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// csp forbids everything a page does not need: scripts, styles, fonts,
// images and connections only from this origin, no inline script or style
// (an injected <script> or style attribute does nothing), no framing (no
// clickjacking), no <base> or plugin, forms only to this origin.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// Config is how a portal runs.
type Config struct {
	// API serves the /v1 routes; the portal calls it in process.
	API http.Handler
	// Logger receives what goes wrong rendering a page.
	Logger *slog.Logger
}

// Portal serves the pages.
type Portal struct {
	api    http.Handler
	log    *slog.Logger
	pages  map[string]*template.Template
	static http.Handler
	mux    *http.ServeMux
}

// New parses the templates; an error is a bug in them.
func New(cfg Config) (*Portal, error) {
	p := &Portal{api: cfg.API, log: cfg.Logger, pages: map[string]*template.Template{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	base := template.New("").Funcs(funcs)
	if _, err := base.ParseFS(templateFS, "templates/layout.html"); err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.ParseFS(templateFS, n); err != nil {
			return nil, fmt.Errorf("template %s: %w", n, err)
		}
		p.pages[name] = t
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	p.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	p.mux = p.routes()
	return p, nil
}

// ServeHTTP serves a page, or the not-found page.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	p.mux.ServeHTTP(w, r)
}

// csrfToken is the browser's CSRF token, set on its first page: the
// cookie and the page's meta tag carry the same value, and the script
// sends it back as the header the API checks. The cookie is HttpOnly
// like the others; only pages of this origin learn the value.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(api.CookieCSRF); err == nil && c.Value != "" {
		return c.Value
	}
	v := rand.Text()
	http.SetCookie(w, api.SessionCookie(api.CookieCSRF, v))
	return v
}

// session is one page request's view of the API: it calls routes in
// process with the browser's cookies, and passes on cookies the API
// renews (an expired access token is replaced on the first call) both to
// the browser and to the page's later calls.
type session struct {
	p       *Portal
	w       http.ResponseWriter
	r       *http.Request
	cookies map[string]string
	order   []string
}

func (p *Portal) session(w http.ResponseWriter, r *http.Request) *session {
	s := &session{p: p, w: w, r: r, cookies: map[string]string{}}
	for _, c := range r.Cookies() {
		if _, ok := s.cookies[c.Name]; !ok {
			s.order = append(s.order, c.Name)
		}
		s.cookies[c.Name] = c.Value
	}
	return s
}

// get reads a route into out. A failure is the API's problem document.
func (s *session) get(route string, out any) error {
	req, err := http.NewRequestWithContext(s.r.Context(), http.MethodGet, route, nil)
	if err != nil {
		return err
	}
	// A server handler expects a body, if empty, as net/http gives it.
	req.Body = http.NoBody
	req.RemoteAddr, req.Host, req.TLS = s.r.RemoteAddr, s.r.Host, s.r.TLS
	req.Header.Set("Accept", "application/json")
	var cs []string
	for _, n := range s.order {
		if v, ok := s.cookies[n]; ok {
			cs = append(cs, (&http.Cookie{Name: n, Value: v}).String())
		}
	}
	if len(cs) > 0 {
		req.Header.Set("Cookie", strings.Join(cs, "; "))
	}
	rec := &recorder{h: http.Header{}, code: http.StatusOK}
	s.p.api.ServeHTTP(rec, req)
	for _, c := range (&http.Response{Header: rec.h}).Cookies() {
		http.SetCookie(s.w, c)
		if c.MaxAge < 0 {
			delete(s.cookies, c.Name)
			continue
		}
		if _, ok := s.cookies[c.Name]; !ok {
			s.order = append(s.order, c.Name)
		}
		s.cookies[c.Name] = c.Value
	}
	if rec.code >= 300 {
		pr := &api.Problem{Status: rec.code}
		if err := json.Unmarshal(rec.body.Bytes(), pr); err != nil || pr.Status == 0 {
			pr.Status, pr.Title = rec.code, http.StatusText(rec.code)
		}
		return pr
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.body.Bytes(), out)
}

// recorder is the ResponseWriter of an in-process call.
type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
	sent bool
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if !r.sent {
		r.code, r.sent = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.sent = true
	return r.body.Write(b)
}

// loginURL sends a browser to sign in and then back to where it was.
func loginURL(r *http.Request) string {
	return "/login?" + url.Values{"next": {r.URL.RequestURI()}}.Encode()
}

// safeNext is where to go after signing in: a path of this origin only,
// so that a link cannot make the portal send someone elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}
