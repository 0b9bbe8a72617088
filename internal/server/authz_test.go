package server

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/api"
)

// world is two tenants, each with a network, an SSH key, a project and an
// instance, and users of every role in tenant a.
type world struct {
	*env
	users map[string]cred // by name
	opB   string          // an operation of tenant b
	invB  int64           // tenant b's invitation of a-viewer
}

func newWorld(t *testing.T) *world {
	e := newEnv(t, Config{})
	w := &world{env: e, users: map[string]cred{}}
	for name, c := range e.tenantWith("a", nil, map[string]string{"a-admin": api.RoleTenantAdmin, "a-member": api.RoleMember, "a-viewer": api.RoleViewer}) {
		w.users[name] = c
	}
	for name, c := range e.tenantWith("b", nil, map[string]string{"b-admin": api.RoleTenantAdmin}) {
		w.users[name] = c
	}
	for _, tn := range []string{"a", "b"} {
		adm := w.users[tn+"-admin"]
		var op api.Operation
		e.must(adm, http.StatusAccepted, "POST", "/v1/tenants/"+tn+"/networks", api.NetworkCreate{Name: "net"}, &op)
		e.must(adm, http.StatusCreated, "POST", "/v1/tenants/"+tn+"/sshkeys", api.SSHKeyCreate{Name: "key", PublicKey: sshKey(tn)}, nil)
		e.must(adm, http.StatusCreated, "POST", "/v1/tenants/"+tn+"/projects", api.ProjectCreate{Name: "proj"}, nil)
		e.must(adm, http.StatusAccepted, "POST", "/v1/tenants/"+tn+"/instances",
			api.InstanceCreate{Name: "vm", Flavor: "standard", Template: "debian-12", Network: "net", SSHKeys: []string{"key"}}, &op)
		if tn == "b" {
			w.opB = op.ID
		}
	}
	var inv api.Invitation
	e.must(w.users["b-admin"], http.StatusAccepted, "POST", "/v1/tenants/b/invitations", api.InvitationCreate{User: "a-viewer", Role: api.RoleViewer}, &inv)
	w.invB = inv.ID
	return w
}

// pathFor fills a route's path with tenant b's objects.
func (w *world) pathFor(rt *route) string {
	r := strings.NewReplacer("{tenant}", "b", "{network}", "net", "{instance}", "vm", "{sshkey}", "key", "{project}", "proj",
		"{user}", "b-admin", "{operation}", w.opB, "{flavor}", "standard", "{template}", "debian-12", "{key}", "nokey",
		"{invitation}", strconv.FormatInt(w.invB, 10))
	return r.Replace(rt.path)
}

// bodyFor is a valid body for a route, so that a refusal is about who
// asks, not what they sent.
func bodyFor(rt *route) any {
	switch rt.in.(type) {
	case api.InstanceCreate:
		return api.InstanceCreate{Name: "vm2", Flavor: "standard", Template: "debian-12", Network: "net"}
	case api.InstanceResize:
		return api.InstanceResize{Flavor: "burstable"}
	case api.InstanceRebuild:
		return api.InstanceRebuild{}
	case api.NetworkCreate:
		return api.NetworkCreate{Name: "net2"}
	case api.SSHKeyCreate:
		return api.SSHKeyCreate{Name: "key2", PublicKey: sshKey("x")}
	case api.ProjectCreate:
		return api.ProjectCreate{Name: "proj2"}
	case api.MembershipCreate:
		return api.MembershipCreate{User: "a-viewer", Role: api.RoleTenantAdmin}
	case api.InvitationCreate:
		return api.InvitationCreate{User: "a-viewer", Role: api.RoleTenantAdmin}
	case api.UserCreate:
		return api.UserCreate{Name: "mallory", Password: "a-long-password-1"}
	case api.TenantUpdate:
		n := "x"
		return api.TenantUpdate{DisplayName: &n}
	case api.TenantCreate:
		return api.TenantCreate{Name: "c"}
	case api.Flavor:
		return api.Flavor{Name: "standard", CPUs: 64, MemoryMiB: 1 << 20}
	case api.Template:
		return api.Template{Name: "debian-12", Image: "/"}
	}
	return nil
}

// TestCrossTenantWalk walks every route of the table as tenant a's admin
// (the strongest tenant role) against tenant b's objects: everything that
// names b or one of its objects answers 404, exactly as for objects that do
// not exist, and operator routes answer 403. Then b's objects are checked
// untouched. A route added to the table without a category fails the test.
func TestCrossTenantWalk(t *testing.T) {
	w := newWorld(t)
	mallory := w.users["a-admin"]
	own := map[string]bool{"me": true, "changePassword": true, "enrollTOTP": true, "confirmTOTP": true, "listAPIKeys": true,
		"createAPIKey": true, "rotateAPIKey": true, "revokeAPIKey": true, "logout": true, "listTenants": true, "listFlavors": true,
		"listTemplates": true, "events": true, "listMyInvitations": true,
		// Passkeys are the caller's own; removing another's is refused in TestPasskeyRefused.
		"beginPasskeyRegistration": true, "createPasskey": true, "listPasskeys": true, "deletePasskey": true}
	walked := 0
	for _, rt := range w.s.table {
		path := w.pathFor(rt)
		var want int
		switch {
		case rt.perm == permPublic:
			continue // login, refresh, OIDC, the document: nothing of b's
		case strings.Contains(rt.path, "{tenant}") || strings.Contains(rt.path, "{operation}") || strings.Contains(rt.path, "{invitation}"):
			want = http.StatusNotFound // another user's invitation too
		case rt.perm == permOperator:
			want = http.StatusForbidden
		case own[rt.id]:
			continue // the caller's own things; checked below where they could leak
		default:
			t.Errorf("route %s (%s %s) has no category in this walk: decide what a's admin may see of b there", rt.id, rt.method, rt.path)
			continue
		}
		status, h, b := w.do(mallory, rt.method, path, bodyFor(rt))
		if status != want {
			t.Errorf("%s %s as a's admin: %d, want %d: %s", rt.method, path, status, want, b)
			continue
		}
		if want == http.StatusNotFound {
			p := w.problemOf(h, b)
			if strings.Contains(p.Detail, "net") && !strings.Contains(p.Detail, "tenant") {
				t.Errorf("%s: 404 detail names the object: %q", path, p.Detail)
			}
		}
		walked++
	}
	if walked < 30 {
		t.Fatalf("walked only %d routes", walked)
	}
	// A 404 for b's existing objects is the same as for a tenant that does
	// not exist.
	_, _, exist := w.do(mallory, "GET", "/v1/tenants/b/instances/vm", nil)
	_, _, none := w.do(mallory, "GET", "/v1/tenants/nosuch/instances/vm", nil)
	if strings.ReplaceAll(string(exist), "/b/", "/X/") != strings.ReplaceAll(strings.ReplaceAll(string(none), "nosuch", "b"), "/b/", "/X/") {
		t.Errorf("existing and missing tenants answer differently:\n%s\n%s", exist, none)
	}
	// Lists that span tenants show a's only.
	var ts api.Page[api.Tenant]
	w.must(mallory, http.StatusOK, "GET", "/v1/tenants", nil, &ts)
	if len(ts.Items) != 1 || ts.Items[0].Name != "a" {
		t.Errorf("a's admin lists tenants %+v", ts.Items)
	}
	// b's things are intact.
	var in api.Instance
	w.must(w.users["b-admin"], http.StatusOK, "GET", "/v1/tenants/b/instances/vm", nil, &in)
	if in.Status != api.StatusCreating || in.Power != "running" {
		t.Errorf("b's instance changed: %+v", in)
	}
	var ms api.Page[api.Membership]
	w.must(w.users["b-admin"], http.StatusOK, "GET", "/v1/tenants/b/members", nil, &ms)
	if len(ms.Items) != 1 {
		t.Errorf("b's members changed: %+v", ms.Items)
	}
	// b's invitation of a-viewer is a-viewer's only: a's admin neither
	// saw nor answered it.
	var mine api.Page[api.Invitation]
	w.must(mallory, http.StatusOK, "GET", "/v1/me/invitations", nil, &mine)
	if len(mine.Items) != 0 {
		t.Errorf("a's admin sees invitations %+v", mine.Items)
	}
	w.must(w.users["a-viewer"], http.StatusOK, "GET", "/v1/me/invitations", nil, &mine)
	if len(mine.Items) != 1 || mine.Items[0].ID != w.invB {
		t.Errorf("a-viewer's invitations after the walk: %+v", mine.Items)
	}
}

// TestRolesInOwnTenant: viewers mutate nothing, members cannot administer
// the tenant, and nobody but operators reaches operator routes.
func TestRolesInOwnTenant(t *testing.T) {
	w := newWorld(t)
	r := strings.NewReplacer("{tenant}", "a", "{network}", "net", "{instance}", "vm", "{sshkey}", "key", "{project}", "proj",
		"{user}", "a-member", "{flavor}", "standard", "{template}", "debian-12")
	checked := 0
	for _, rt := range w.s.table {
		if !strings.Contains(rt.path, "{tenant}") && rt.perm != permOperator {
			continue
		}
		path := r.Replace(rt.path)
		for user, allowed := range map[string][]perm{
			"a-viewer": {permTenantRead},
			"a-member": {permTenantRead, permTenantWrite},
		} {
			mayCall := false
			for _, p := range allowed {
				mayCall = mayCall || p == rt.perm
			}
			if mayCall {
				continue
			}
			status, _, b := w.do(w.users[user], rt.method, path, bodyFor(rt))
			if status != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d, want 403: %s", rt.method, path, user, status, b)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Fatalf("checked only %d calls", checked)
	}
	// Nothing changed: the viewer's and member's refusals left a's state.
	var in api.Instance
	w.must(w.users["a-admin"], http.StatusOK, "GET", "/v1/tenants/a/instances/vm", nil, &in)
	if in.Power != "running" || in.Version != 1 {
		t.Errorf("a's instance changed: %+v", in)
	}
}
