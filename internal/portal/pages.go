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

func (p *Portal) account(s *session, v *view) (string, error) {
	var keys api.Page[api.APIKey]
	if err := s.get("/v1/me/apikeys", &keys); err != nil {
		return "", err
	}
	v.Title, v.Data = "Account", keys.Items
	return "account", nil
}

// tp is the API path of the page's tenant.
func tp(v *view) string { return "/v1/tenants/" + url.PathEscape(v.Tenant) }

func (p *Portal) instances(s *session, v *view) (string, error) {
	var list api.Page[api.Instance]
	if err := s.get(tp(v)+"/instances?limit=1000", &list); err != nil {
		return "", err
	}
	v.Title, v.Data, v.Events = "Instances", list.Items, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "instances", nil
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
	var f api.Page[api.Flavor]
	var t api.Page[api.Template]
	if err := s.get("/v1/flavors?limit=1000", &f); err != nil {
		return c, err
	}
	if err := s.get("/v1/templates?limit=1000", &t); err != nil {
		return c, err
	}
	c.Flavors, c.Templates = f.Items, t.Items
	if tenantToo {
		var n api.Page[api.Network]
		var k api.Page[api.SSHKey]
		if err := s.get(tp(v)+"/networks?limit=1000", &n); err != nil {
			return c, err
		}
		if err := s.get(tp(v)+"/sshkeys?limit=1000", &k); err != nil {
			return c, err
		}
		c.Networks, c.SSHKeys = n.Items, k.Items
	}
	return c, nil
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
	var ops api.Page[api.Operation]
	if err := s.get(tp(v)+"/operations?limit=1000", &ops); err != nil {
		return "", err
	}
	for _, o := range ops.Items {
		if o.Target == path {
			d.Operations = append(d.Operations, o)
		}
	}
	slices.Reverse(d.Operations) // newest first
	var err error
	if d.Catalogue, err = p.catalogueOf(s, v, false); err != nil {
		return "", err
	}
	v.Title, v.Data, v.Events = d.Instance.Name, d, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "instance", nil
}

func (p *Portal) networks(s *session, v *view) (string, error) {
	var list api.Page[api.Network]
	if err := s.get(tp(v)+"/networks?limit=1000", &list); err != nil {
		return "", err
	}
	v.Title, v.Data, v.Events = "Networks", list.Items, "/v1/events?tenant="+url.QueryEscape(v.Tenant)
	return "networks", nil
}

func (p *Portal) sshKeys(s *session, v *view) (string, error) {
	var list api.Page[api.SSHKey]
	if err := s.get(tp(v)+"/sshkeys?limit=1000", &list); err != nil {
		return "", err
	}
	v.Title, v.Data = "SSH keys", list.Items
	return "sshkeys", nil
}

func (p *Portal) members(s *session, v *view) (string, error) {
	var list api.Page[api.Membership]
	if err := s.get(tp(v)+"/members?limit=1000", &list); err != nil {
		return "", err
	}
	v.Title, v.Data = "Members", list.Items
	return "members", nil
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
	var list api.Page[api.Tenant]
	if err := s.get("/v1/tenants?limit=1000", &list); err != nil {
		return "", err
	}
	v.Title, v.Data = "Tenants", tenantsPage{Tenants: list.Items}
	return "tenants", nil
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
	var users api.Page[api.User]
	var tenants api.Page[api.Tenant]
	if err := s.get("/v1/users?limit=1000", &users); err != nil {
		return "", err
	}
	if err := s.get("/v1/tenants?limit=1000", &tenants); err != nil {
		return "", err
	}
	d.Users, d.Tenants = users.Items, tenants.Items
	v.Title, v.Data = "Users", d
	return "users", nil
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
