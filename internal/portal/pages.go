package portal

import (
	"cmp"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/holdfast/holdfast/api"
)

// view is what every page template gets.
type view struct {
	Title   string
	CSRF    string
	Me      *api.Me
	Tenant  string // the tenant the page is about, if any
	Role    string // the caller's role in it: tenant-admin, member, viewer, operator
	Section string // which navigation entry is current
	Events  string // the event stream that updates the page live
	// StyleNonce, when set, lets the page's scripts add <style>
	// elements carrying it (see console.go).
	StyleNonce string
	Data       any
}

// Admin reports whether the caller administers the page's tenant.
func (v *view) Admin() bool { return v.Role == api.RoleTenantAdmin || v.Role == "operator" }

// Writer reports whether the caller may change the tenant's resources.
func (v *view) Writer() bool { return v.Admin() || v.Role == api.RoleMember }

// handler loads what a page shows and names its template. It fills
// v.Data; an error from the API becomes the matching page.
type handler func(s *session, v *view) (string, error)

func (p *Portal) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("GET /static/", p.static)
	m.HandleFunc("GET /login", p.login)
	m.HandleFunc("GET /{$}", p.signedIn("", p.home))
	m.HandleFunc("GET /account", p.signedIn("account", p.account))

	t := "GET /t/{tenant}"
	m.HandleFunc(t+"/{$}", p.signedIn("instances", p.tenantHome))
	m.HandleFunc(t+"/instances", p.tenantPage("instances", p.instances))
	m.HandleFunc(t+"/instances/new", p.tenantPage("instances", p.newInstance))
	m.HandleFunc(t+"/instances/{instance}", p.tenantPage("instances", p.instance))
	m.HandleFunc(t+"/instances/{instance}/console", p.tenantPage("instances", p.console))
	m.HandleFunc(t+"/networks", p.tenantPage("networks", p.networks))
	m.HandleFunc(t+"/sshkeys", p.tenantPage("sshkeys", p.sshKeys))
	m.HandleFunc(t+"/members", p.tenantPage("members", p.members))
	m.HandleFunc(t+"/usage", p.tenantPage("usage", p.usage))
	m.HandleFunc(t+"/audit", p.tenantPage("audit", p.tenantAudit))

	o := "GET /operator"
	m.HandleFunc(o+"/tenants", p.signedIn("tenants", p.operatorTenants))
	m.HandleFunc(o+"/tenants/{tenant}", p.signedIn("tenants", p.operatorTenant))
	m.HandleFunc(o+"/users", p.signedIn("users", p.operatorUsers))
	m.HandleFunc(o+"/catalogue", p.signedIn("catalogue", p.catalogue))
	m.HandleFunc(o+"/audit", p.signedIn("audit", p.operatorAudit))
	m.HandleFunc(o+"/status", p.signedIn("status", p.cloudStatus))

	m.HandleFunc("/", p.notFound)
	return m
}

// render writes a page. Pages are never cached: they show one user's
// data, and what was true a moment ago.
func (p *Portal) render(w http.ResponseWriter, status int, name string, v *view) {
	t, ok := p.pages[name]
	if !ok {
		p.log.Error("no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "page", v); err != nil {
		p.log.Error("page failed to render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	if v.StyleNonce != "" {
		h.Set("Content-Security-Policy", cspWithStyleNonce(v.StyleNonce))
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusNotFound, "notfound", &view{Title: "Not found", CSRF: csrfToken(w, r)})
}

// signedIn serves a page for a signed-in caller: one without a session
// is sent to sign in, and back here afterwards.
func (p *Portal) signedIn(section string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := &view{CSRF: csrfToken(w, r), Section: section}
		s := p.session(w, r)
		var me api.Me
		if err := s.get("/v1/me", &me); err != nil {
			p.fail(w, r, v, err)
			return
		}
		v.Me = &me
		name, err := h(s, v)
		if err != nil {
			p.fail(w, r, v, err)
			return
		}
		if name == "" { // the handler redirected
			return
		}
		p.render(w, http.StatusOK, name, v)
	}
}

// tenantPage is a signedIn page about the tenant in its path. A tenant
// the caller is not in does not exist, as in the API.
func (p *Portal) tenantPage(section string, h handler) http.HandlerFunc {
	return p.signedIn(section, func(s *session, v *view) (string, error) {
		v.Tenant = s.r.PathValue("tenant")
		v.Role = roleIn(v.Me, v.Tenant)
		if v.Role == "" {
			return "", &api.Problem{Status: http.StatusNotFound}
		}
		return h(s, v)
	})
}

// roleIn is the caller's role in a tenant: what the API would let them
// do, used only to leave out what it would refuse.
func roleIn(me *api.Me, tenant string) string {
	if me.User.Operator {
		return "operator"
	}
	for _, m := range me.User.Memberships {
		if m.Tenant == tenant {
			return m.Role
		}
	}
	return ""
}

// fail answers a page whose API call failed: sign-in for no session,
// the not-found page for what does not exist or is not the caller's,
// and otherwise the problem as the API stated it.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	var pr *api.Problem
	if !errors.As(err, &pr) {
		p.log.Error("page failed", "path", r.URL.Path, "err", err)
		pr = &api.Problem{Status: http.StatusInternalServerError, Title: "Internal Server Error", Detail: "the server log has the details"}
	}
	switch pr.Status {
	case http.StatusUnauthorized:
		http.Redirect(w, r, loginURL(r), http.StatusSeeOther)
	case http.StatusNotFound:
		v.Title, v.Tenant = "Not found", ""
		p.render(w, http.StatusNotFound, "notfound", v)
	default:
		v.Title, v.Data = pr.Title, pr
		p.render(w, pr.Status, "error", v)
	}
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "login", &view{Title: "Sign in", CSRF: csrfToken(w, r), Data: safeNext(r.URL.Query().Get("next"))})
}

// home sends the caller where they work: operators to the tenants,
// others to their first tenant.
func (p *Portal) home(s *session, v *view) (string, error) {
	to := "/account"
	switch {
	case v.Me.User.Operator:
		to = "/operator/tenants"
	case len(v.Me.User.Memberships) > 0:
		to = "/t/" + url.PathEscape(v.Me.User.Memberships[0].Tenant) + "/instances"
	}
	http.Redirect(s.w, s.r, to, http.StatusSeeOther)
	return "", nil
}

func (p *Portal) tenantHome(s *session, v *view) (string, error) {
	http.Redirect(s.w, s.r, "/t/"+url.PathEscape(s.r.PathValue("tenant"))+"/instances", http.StatusSeeOther)
	return "", nil
}

// accountPage is the caller's credentials.
type accountPage struct {
	APIKeys  []api.APIKey
	Passkeys []api.Passkey
}

func (p *Portal) account(s *session, v *view) (string, error) {
	var keys api.Page[api.APIKey]
	var passkeys api.Page[api.Passkey]
	if err := s.get("/v1/me/apikeys", &keys); err != nil {
		return "", err
	}
	if err := s.get("/v1/me/passkeys", &passkeys); err != nil {
		return "", err
	}
	v.Title, v.Data = "Account", accountPage{APIKeys: keys.Items, Passkeys: passkeys.Items}
	return "account", nil
}

// list reads the items of a list route: the first thousand, more than a
// page shows.
func list[T any](s *session, route string) ([]T, error) {
	var page api.Page[T]
	err := s.get(route+"?limit=1000", &page)
	return page.Items, err
}

// tp is the API path of the page's tenant.
func tp(v *view) string { return "/v1/tenants/" + url.PathEscape(v.Tenant) }

func (p *Portal) instances(s *session, v *view) (string, error) {
	items, err := list[api.Instance](s, tp(v)+"/instances")
	v.Title, v.Data, v.Events = "Instances", items, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "instances", err
}

// catalogue is what an instance is made from.
type catalogue struct {
	Flavors   []api.Flavor
	Templates []api.Template
	Networks  []api.Network
	SSHKeys   []api.SSHKey
}

func (p *Portal) catalogueOf(s *session, v *view, tenantToo bool) (catalogue, error) {
	var c catalogue
	var err error
	if c.Flavors, err = list[api.Flavor](s, "/v1/flavors"); err != nil {
		return c, err
	}
	if c.Templates, err = list[api.Template](s, "/v1/templates"); err != nil {
		return c, err
	}
	if tenantToo {
		if c.Networks, err = list[api.Network](s, tp(v)+"/networks"); err != nil {
			return c, err
		}
		c.SSHKeys, err = list[api.SSHKey](s, tp(v)+"/sshkeys")
	}
	return c, err
}

func (p *Portal) newInstance(s *session, v *view) (string, error) {
	c, err := p.catalogueOf(s, v, true)
	if err != nil {
		return "", err
	}
	v.Title, v.Data = "New instance", c
	return "instance-new", nil
}

// instancePage is an instance with what can be done to it.
type instancePage struct {
	Instance   api.Instance
	Operations []api.Operation
	Catalogue  catalogue
}

func (p *Portal) instance(s *session, v *view) (string, error) {
	var d instancePage
	path := tp(v) + "/instances/" + url.PathEscape(s.r.PathValue("instance"))
	if err := s.get(path, &d.Instance); err != nil {
		return "", err
	}
	ops, err := list[api.Operation](s, tp(v)+"/operations")
	if err != nil {
		return "", err
	}
	for _, o := range ops {
		if o.Target == path {
			d.Operations = append(d.Operations, o)
		}
	}
	slices.Reverse(d.Operations) // newest first
	if d.Catalogue, err = p.catalogueOf(s, v, false); err != nil {
		return "", err
	}
	v.Title, v.Data, v.Events = d.Instance.Name, d, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "instance", nil
}

func (p *Portal) networks(s *session, v *view) (string, error) {
	items, err := list[api.Network](s, tp(v)+"/networks")
	v.Title, v.Data, v.Events = "Networks", items, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "networks", err
}

func (p *Portal) sshKeys(s *session, v *view) (string, error) {
	items, err := list[api.SSHKey](s, tp(v)+"/sshkeys")
	v.Title, v.Data = "SSH keys", items
	return "sshkeys", err
}

func (p *Portal) members(s *session, v *view) (string, error) {
	items, err := list[api.Membership](s, tp(v)+"/members")
	v.Title, v.Data = "Members", items
	return "members", err
}

func (p *Portal) usage(s *session, v *view) (string, error) {
	var t api.Tenant
	if err := s.get(tp(v), &t); err != nil {
		return "", err
	}
	v.Title, v.Data = "Usage", t
	return "usage", nil
}

func (p *Portal) tenantAudit(s *session, v *view) (string, error) {
	es, err := lastAudit(s, tp(v)+"/audit")
	if err != nil {
		return "", err
	}
	v.Title, v.Data = "Audit trail", auditPage{Entries: es}
	return "audit", nil
}

// lastAudit reads the newest entries of an audit list, newest first.
func lastAudit(s *session, route string) ([]api.AuditEntry, error) {
	var all []api.AuditEntry
	cursor := ""
	for {
		var page api.Page[api.AuditEntry]
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if err := s.get(route+"?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if len(all) > 500 {
			all = all[len(all)-500:]
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	slices.Reverse(all)
	return all, nil
}

// operatorOnly refuses a page to non-operators as the API would.
func operatorOnly(v *view) error {
	if !v.Me.User.Operator {
		return &api.Problem{Status: http.StatusForbidden, Title: "Forbidden", Detail: "this page is for operators"}
	}
	return nil
}

// tenantsPage lists tenants with the roles a new user can get.
type tenantsPage struct {
	Tenants []api.Tenant
}

func (p *Portal) operatorTenants(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	items, err := list[api.Tenant](s, "/v1/tenants")
	v.Title, v.Data = "Tenants", tenantsPage{Tenants: items}
	return "tenants", err
}

func (p *Portal) operatorTenant(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	var t api.Tenant
	if err := s.get("/v1/tenants/"+url.PathEscape(s.r.PathValue("tenant")), &t); err != nil {
		return "", err
	}
	v.Title, v.Data = "Tenant "+t.Name, t
	return "tenant", nil
}

// usersPage lists users, and the tenants a new one can join.
type usersPage struct {
	Users   []api.User
	Tenants []api.Tenant
}

func (p *Portal) operatorUsers(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	var d usersPage
	var err error
	if d.Users, err = list[api.User](s, "/v1/users"); err != nil {
		return "", err
	}
	d.Tenants, err = list[api.Tenant](s, "/v1/tenants")
	v.Title, v.Data = "Users", d
	return "users", err
}

func (p *Portal) catalogue(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	c, err := p.catalogueOf(s, v, false)
	if err != nil {
		return "", err
	}
	v.Title, v.Data = "Catalogue", c
	return "catalogue", nil
}

// auditPage is audit entries, with the log's verification for
// operators.
type auditPage struct {
	Entries      []api.AuditEntry
	Verification *api.AuditVerification
}

func (p *Portal) operatorAudit(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	var d auditPage
	var err error
	if d.Entries, err = lastAudit(s, "/v1/audit"); err != nil {
		return "", err
	}
	d.Verification = &api.AuditVerification{}
	if err := s.get("/v1/audit/verify", d.Verification); err != nil {
		return "", err
	}
	v.Title, v.Data = "Audit log", d
	return "audit", nil
}

// statusPage is the cloud's resources, the ones not as the spec says
// first.
type statusPage struct {
	api.CloudStatus
	Bad int
}

func (p *Portal) cloudStatus(s *session, v *view) (string, error) {
	if err := operatorOnly(v); err != nil {
		return "", err
	}
	var d statusPage
	if err := s.get("/v1/cloud/status", &d.CloudStatus); err != nil {
		return "", err
	}
	slices.SortStableFunc(d.Resources, func(a, b api.ResourceStatus) int {
		return cmp.Compare(boolInt(a.State == "ok"), boolInt(b.State == "ok"))
	})
	for _, r := range d.Resources {
		if r.State != "ok" {
			d.Bad++
		}
	}
	v.Title, v.Data = "Cloud status", d
	return "status", nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var funcs = template.FuncMap{
	"pathesc":  url.PathEscape,
	"queryesc": url.QueryEscape,
	"last": func(p string) string {
		return p[strings.LastIndex(p, "/")+1:]
	},
	"pct": func(used, quota int64) int64 {
		if quota <= 0 {
			if used > 0 {
				return 100
			}
			return 0
		}
		return min(100, used*100/quota)
	},
	"i64":   func(n int) int64 { return int64(n) },
	"has":   slices.Contains[[]string],
	"roles": func() []string { return []string{api.RoleMember, api.RoleTenantAdmin, api.RoleViewer} },
}
