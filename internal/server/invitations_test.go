package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
)

// TestInvitations: a tenant admin cannot add an outsider — another
// tenant's admin, an operator — to their tenant; they invite them, and the
// answer is the same whether or not the name is a user's. The invited
// user sees the invitation and joins by accepting it, or declines it;
// each step is audited, and declining is not told to the tenant.
func TestInvitations(t *testing.T) {
	e := newEnv(t, Config{})
	mallory := e.tenantWith("acme", nil, map[string]string{"mallory": api.RoleTenantAdmin})["mallory"]
	bob := e.tenantWith("globex", nil, map[string]string{"bob": api.RoleTenantAdmin})["bob"]
	e.must(e.admin, http.StatusCreated, "POST", "/v1/users", api.UserCreate{Name: "root2", Password: "a-long-password-2", Operator: true}, nil)
	root2 := e.login("root2", "a-long-password-2", "")

	// Adding directly: refused for users who exist and for names that
	// do not, with the same answer; nobody joined.
	answers := map[string]string{}
	for _, name := range []string{"bob", "root2", "nobody"} {
		status, h, b := e.do(mallory, "PUT", "/v1/tenants/acme/members", api.MembershipCreate{User: name, Role: api.RoleTenantAdmin})
		if status != http.StatusConflict || e.problemOf(h, b).Type != problemType("not-a-member") {
			t.Errorf("a tenant admin adds %s: %d %s", name, status, b)
		}
		answers[name] = strings.ReplaceAll(string(b), `\"`+name+`\"`, `\"X\"`)
	}
	if answers["bob"] != answers["nobody"] || answers["root2"] != answers["nobody"] {
		t.Errorf("adding a user and a name that is none answer differently:\n%s", answers)
	}
	var ms api.Page[api.Membership]
	e.must(mallory, http.StatusOK, "GET", "/v1/tenants/acme/members", nil, &ms)
	if len(ms.Items) != 1 {
		t.Fatalf("acme's members: %+v", ms.Items)
	}

	// Inviting: the same answer, but for the names and ids.
	invite := func(name string) (api.Invitation, []byte) {
		t.Helper()
		status, h, b := e.do(mallory, "POST", "/v1/tenants/acme/invitations", api.InvitationCreate{User: name, Role: api.RoleMember})
		if status != http.StatusAccepted {
			t.Fatalf("inviting %s: %d %s", name, status, b)
		}
		if h.Get("Location") != "" {
			t.Errorf("inviting %s answers a Location", name)
		}
		var inv api.Invitation
		if err := json.Unmarshal(b, &inv); err != nil {
			t.Fatal(err)
		}
		return inv, b
	}
	shape := func(inv api.Invitation) string {
		inv.ID, inv.User, inv.CreatedAt, inv.ExpiresAt = 0, "", time.Time{}, time.Time{}
		b, _ := json.Marshal(inv)
		return string(b)
	}
	toBob, _ := invite("bob")
	toRoot, _ := invite("root2")
	toNobody, _ := invite("nobody")
	if shape(toBob) != shape(toNobody) || shape(toRoot) != shape(toNobody) || toBob.InvitedBy != "mallory" || toBob.Tenant != "acme" {
		t.Errorf("invitations of users and of a name that is none differ:\n%+v\n%+v\n%+v", toBob, toRoot, toNobody)
	}
	if got := toBob.ExpiresAt.Sub(e.clock.now()); got != invitationTTL {
		t.Errorf("the invitation expires in %v, want %v", got, invitationTTL)
	}
	var open api.Page[api.Invitation]
	e.must(mallory, http.StatusOK, "GET", "/v1/tenants/acme/invitations", nil, &open)
	if len(open.Items) != 3 {
		t.Errorf("acme's open invitations: %+v", open.Items)
	}
	// A member is not invited; nor is an invitation a membership.
	if status, _, b := e.do(mallory, "POST", "/v1/tenants/acme/invitations", api.InvitationCreate{User: "mallory", Role: api.RoleViewer}); status != http.StatusConflict {
		t.Errorf("inviting a member: %d %s", status, b)
	}
	if status, _, _ := e.do(bob, "GET", "/v1/tenants/acme", nil); status != http.StatusNotFound {
		t.Errorf("an invited user reads the tenant: %d", status)
	}

	// Only the invited user sees and answers an invitation.
	mine := func(c cred) []api.Invitation {
		t.Helper()
		var p api.Page[api.Invitation]
		e.must(c, http.StatusOK, "GET", "/v1/me/invitations", nil, &p)
		return p.Items
	}
	if got := mine(bob); len(got) != 1 || got[0].ID != toBob.ID {
		t.Fatalf("bob's invitations: %+v", got)
	}
	if got := mine(mallory); len(got) != 0 {
		t.Errorf("mallory's invitations: %+v", got)
	}
	if status, _, _ := e.do(mallory, "POST", "/v1/me/invitations/"+itoa(toBob.ID)+"/accept", nil); status != http.StatusNotFound {
		t.Errorf("mallory accepts bob's invitation: %d", status)
	}
	// A user made later under an invited name is someone else.
	e.must(e.admin, http.StatusCreated, "POST", "/v1/users", api.UserCreate{Name: "nobody", Password: "a-long-password-3"}, nil)
	if got := mine(e.login("nobody", "a-long-password-3", "")); len(got) != 0 {
		t.Errorf("a user made after the invitation of their name sees %+v", got)
	}

	// bob accepts: he is a member, with the invited role, from the next
	// request on.
	var m api.Membership
	e.must(bob, http.StatusOK, "POST", "/v1/me/invitations/"+itoa(toBob.ID)+"/accept", nil, &m)
	if m != (api.Membership{Tenant: "acme", User: "bob", Role: api.RoleMember}) {
		t.Errorf("accepted: %+v", m)
	}
	e.must(bob, http.StatusOK, "GET", "/v1/tenants/acme", nil, nil)
	if status, _, _ := e.do(bob, "POST", "/v1/me/invitations/"+itoa(toBob.ID)+"/accept", nil); status != http.StatusNotFound {
		t.Errorf("accepting twice: %d", status)
	}
	// root2 declines.
	e.must(root2, http.StatusNoContent, "DELETE", "/v1/me/invitations/"+itoa(toRoot.ID), nil, nil)
	if got := mine(root2); len(got) != 0 {
		t.Errorf("root2's invitations after declining: %+v", got)
	}
	// The admin withdraws the invitation of nobody.
	e.must(mallory, http.StatusNoContent, "DELETE", "/v1/tenants/acme/invitations/"+itoa(toNobody.ID), nil, nil)
	e.must(mallory, http.StatusOK, "GET", "/v1/tenants/acme/invitations", nil, &open)
	if len(open.Items) != 0 {
		t.Errorf("acme's open invitations at the end: %+v", open.Items)
	}
	// Role changes of members stay direct.
	e.must(mallory, http.StatusOK, "PUT", "/v1/tenants/acme/members", api.MembershipCreate{User: "bob", Role: api.RoleViewer}, nil)

	// The audit: every step, with whom; the tenant's log shows the
	// invitations and who joined, not who declined.
	var all, acme api.Page[api.AuditEntry]
	e.must(e.admin, http.StatusOK, "GET", "/v1/audit?limit=1000", nil, &all)
	e.must(mallory, http.StatusOK, "GET", "/v1/tenants/acme/audit?limit=1000", nil, &acme)
	has := func(es []api.AuditEntry, actor, action, detail string) bool {
		for _, x := range es {
			d, _ := json.Marshal(x.Detail)
			if x.Actor == actor && x.Action == action && x.Result == "ok" && bytes.Contains(d, []byte(detail)) {
				return true
			}
		}
		return false
	}
	for _, want := range []struct{ actor, action, detail string }{
		{"mallory", "invite", `"user":"bob"`},
		{"mallory", "invite", `"user":"nobody"`},
		{"bob", "acceptInvitation", `"role":"member"`},
		{"mallory", "withdrawInvitation", ``},
		{"mallory", "setMember", `"user":"bob"`},
	} {
		if !has(all.Items, want.actor, want.action, want.detail) || !has(acme.Items, want.actor, want.action, want.detail) {
			t.Errorf("audit lacks %+v", want)
		}
	}
	if !has(all.Items, "root2", "declineInvitation", `"tenant":"acme"`) {
		t.Error("audit lacks root2's decline")
	}
	if has(acme.Items, "root2", "declineInvitation", "") {
		t.Error("acme's audit tells of root2's decline")
	}
}

// TestInvitationsEnd: an invitation unanswered for invitationTTL can no
// longer be accepted and leaves the lists.
func TestInvitationsEnd(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.tenantWith("acme", nil, map[string]string{"ann": api.RoleTenantAdmin})["ann"]
	e.must(e.admin, http.StatusCreated, "POST", "/v1/users", api.UserCreate{Name: "bob", Password: "a-long-password-2"}, nil)
	var inv api.Invitation
	e.must(admin, http.StatusAccepted, "POST", "/v1/tenants/acme/invitations", api.InvitationCreate{User: "bob", Role: api.RoleViewer}, &inv)
	e.clock.advance(invitationTTL + time.Second)
	bob := e.login("bob", "a-long-password-2", "")
	admin = e.login("ann", "password-of-ann", "")
	var p api.Page[api.Invitation]
	for _, c := range []struct {
		who  cred
		path string
	}{{bob, "/v1/me/invitations"}, {admin, "/v1/tenants/acme/invitations"}} {
		e.must(c.who, http.StatusOK, "GET", c.path, nil, &p)
		if len(p.Items) != 0 {
			t.Errorf("%s lists an expired invitation: %+v", c.path, p.Items)
		}
	}
	if status, _, _ := e.do(bob, "POST", "/v1/me/invitations/"+itoa(inv.ID)+"/accept", nil); status != http.StatusNotFound {
		t.Errorf("accepting an expired invitation: %d", status)
	}
}
