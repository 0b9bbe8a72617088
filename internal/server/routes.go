package server

import (
	"net/http"

	"github.com/holdfast/holdfast/api"
)

// perm is what a route requires of its caller. Tenant permissions are
// checked against the caller's role in the tenant the path names; the
// check happens in one place (authorize), never in handlers.
type perm int

const (
	permPublic        perm = iota // no authentication
	permAuthenticated             // any authenticated caller
	permOperator                  // operators only
	permTenantRead                // any member of the path's tenant
	permTenantWrite               // members and tenant admins
	permTenantAdmin               // tenant admins
)

func (p perm) String() string {
	return [...]string{"public", "authenticated", "operator", "tenant:read", "tenant:write", "tenant:admin"}[p]
}

// rolePerms says what each role of a tenant may do there. Operators may
// do everything everywhere.
var rolePerms = map[string][]perm{
	api.RoleViewer:      {permTenantRead},
	api.RoleMember:      {permTenantRead, permTenantWrite},
	api.RoleTenantAdmin: {permTenantRead, permTenantWrite, permTenantAdmin},
}

// param is a query parameter a route reads.
type param struct {
	name, doc, typ string
}

var pageParams = []param{
	{"limit", "Items per page, 1-1000 (default 100).", "integer"},
	{"cursor", "The next field of the previous page.", "string"},
}

// route is one endpoint: method, path, who may call it, what it takes and
// answers, and its handler. The table below is the whole API surface; the
// OpenAPI document and the authorization tests are made from it.
type route struct {
	method, path string
	id, summary  string
	tag          string
	perm         perm
	in, out      any // wire types, for decoding and for the OpenAPI document
	status       int // success status
	query        []param
	ifMatch      bool   // takes If-Match
	stream       string // media type of a streamed answer
	h            func(*request) error
}

func (s *Server) routes() []*route {
	const (
		get, post, patch, put, del = http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete
		T                          = "/v1/tenants/{tenant}"
	)
	ok, created, accepted, none := http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent
	return []*route{
		// Authentication.
		{method: post, path: "/v1/auth/login", id: "login", summary: "Log in with a password (and a TOTP code or a passkey once the user has a second factor)", tag: "auth", perm: permPublic,
			in: api.LoginRequest{}, out: api.Tokens{}, status: ok, h: s.login},
		{method: post, path: "/v1/auth/refresh", id: "refresh", summary: "Exchange a refresh token for new tokens", tag: "auth", perm: permPublic,
			in: api.RefreshRequest{}, out: api.Tokens{}, status: ok, h: s.refresh},
		{method: post, path: "/v1/auth/logout", id: "logout", summary: "End the caller's session", tag: "auth", perm: permAuthenticated,
			status: none, h: s.logout},
		{method: post, path: "/v1/auth/passkey/challenge", id: "passkeyChallenge", summary: "Start a passkey login: a WebAuthn challenge for navigator.credentials.get", tag: "auth", perm: permPublic,
			in: api.PasskeyChallengeRequest{}, out: api.PasskeyChallenge{}, status: ok, h: s.passkeyChallenge},
		{method: post, path: "/v1/auth/passkey/login", id: "passkeyLogin", summary: "Log in with a passkey alone (it verified its user: multi-factor)", tag: "auth", perm: permPublic,
			in: api.PasskeyLogin{}, out: api.Tokens{}, status: ok, h: s.passkeyLogin},
		{method: get, path: "/v1/auth/oidc/login", id: "oidcLogin", summary: "Start an OpenID Connect login (redirect)", tag: "auth", perm: permPublic,
			status: http.StatusFound, h: s.oidcLogin},
		{method: get, path: "/v1/auth/oidc/callback", id: "oidcCallback", summary: "Finish an OpenID Connect login", tag: "auth", perm: permPublic,
			out: api.Tokens{}, status: ok, query: []param{{"code", "Authorization code.", "string"}, {"state", "State.", "string"}}, h: s.oidcCallback},

		// The caller.
		{method: get, path: "/v1/me", id: "me", summary: "Who the caller is", tag: "me", perm: permAuthenticated,
			out: api.Me{}, status: ok, h: s.me},
		{method: put, path: "/v1/me/password", id: "changePassword", summary: "Change the caller's password", tag: "me", perm: permAuthenticated,
			in: api.PasswordChange{}, status: none, h: s.changePassword},
		{method: post, path: "/v1/me/totp", id: "enrollTOTP", summary: "Start enrolling a TOTP second factor", tag: "me", perm: permAuthenticated,
			out: api.TOTPEnrollment{}, status: created, h: s.enrollTOTP},
		{method: post, path: "/v1/me/totp/confirm", id: "confirmTOTP", summary: "Confirm a TOTP enrollment with a current code", tag: "me", perm: permAuthenticated,
			in: api.TOTPConfirm{}, status: none, h: s.confirmTOTP},
		{method: post, path: "/v1/me/passkeys/registration", id: "beginPasskeyRegistration", summary: "Start registering a passkey: WebAuthn options for navigator.credentials.create", tag: "passkeys", perm: permAuthenticated,
			out: api.PasskeyRegistration{}, status: ok, h: s.beginPasskeyRegistration},
		{method: post, path: "/v1/me/passkeys", id: "createPasskey", summary: "Finish registering a passkey with the browser's credential", tag: "passkeys", perm: permAuthenticated,
			in: api.PasskeyCreate{}, out: api.Passkey{}, status: created, h: s.createPasskey},
		{method: get, path: "/v1/me/passkeys", id: "listPasskeys", summary: "List the caller's passkeys", tag: "passkeys", perm: permAuthenticated,
			out: api.Page[api.Passkey]{}, status: ok, h: s.listPasskeys},
		{method: del, path: "/v1/me/passkeys/{passkey}", id: "deletePasskey", summary: "Remove one of the caller's passkeys", tag: "passkeys", perm: permAuthenticated,
			status: none, h: s.deletePasskey},
		{method: get, path: "/v1/me/apikeys", id: "listAPIKeys", summary: "List the caller's API keys", tag: "apikeys", perm: permAuthenticated,
			out: api.Page[api.APIKey]{}, status: ok, h: s.listAPIKeys},
		{method: post, path: "/v1/me/apikeys", id: "createAPIKey", summary: "Create an API key (the secret is shown once)", tag: "apikeys", perm: permAuthenticated,
			in: api.APIKeyCreate{}, out: api.APIKeySecret{}, status: created, h: s.createAPIKey},
		{method: post, path: "/v1/me/apikeys/{key}/rotate", id: "rotateAPIKey", summary: "Replace a key by a new one (the old one is revoked)", tag: "apikeys", perm: permAuthenticated,
			out: api.APIKeySecret{}, status: created, h: s.rotateAPIKey},
		{method: del, path: "/v1/me/apikeys/{key}", id: "revokeAPIKey", summary: "Revoke an API key", tag: "apikeys", perm: permAuthenticated,
			status: none, h: s.revokeAPIKey},
		{method: get, path: "/v1/me/invitations", id: "listMyInvitations", summary: "List the invitations into tenants the caller may accept", tag: "me", perm: permAuthenticated,
			out: api.Page[api.Invitation]{}, status: ok, h: s.listMyInvitations},
		{method: post, path: "/v1/me/invitations/{invitation}/accept", id: "acceptInvitation", summary: "Accept an invitation: join its tenant with its role", tag: "me", perm: permAuthenticated,
			out: api.Membership{}, status: ok, h: s.acceptInvitation},
		{method: del, path: "/v1/me/invitations/{invitation}", id: "declineInvitation", summary: "Decline an invitation", tag: "me", perm: permAuthenticated,
			status: none, h: s.declineInvitation},

		// Operators: tenants, users, the catalogue.
		{method: get, path: "/v1/tenants", id: "listTenants", summary: "List tenants (operators: all; others: their own)", tag: "tenants", perm: permAuthenticated,
			out: api.Page[api.Tenant]{}, status: ok, query: pageParams, h: s.listTenants},
		{method: post, path: "/v1/tenants", id: "createTenant", summary: "Create a tenant", tag: "tenants", perm: permOperator,
			in: api.TenantCreate{}, out: api.Tenant{}, status: created, h: s.createTenant},
		{method: get, path: T, id: "getTenant", summary: "Show a tenant with its quota and usage", tag: "tenants", perm: permTenantRead,
			out: api.Tenant{}, status: ok, h: s.getTenant},
		{method: patch, path: T, id: "updateTenant", summary: "Change a tenant's name or quota", tag: "tenants", perm: permOperator,
			in: api.TenantUpdate{}, out: api.Tenant{}, status: ok, ifMatch: true, h: s.updateTenant},
		{method: del, path: T, id: "deleteTenant", summary: "Delete a tenant that owns nothing", tag: "tenants", perm: permOperator,
			status: none, h: s.deleteTenant},
		{method: get, path: "/v1/users", id: "listUsers", summary: "List users", tag: "users", perm: permOperator,
			out: api.Page[api.User]{}, status: ok, query: pageParams, h: s.listUsers},
		{method: post, path: "/v1/users", id: "createUser", summary: "Create a user", tag: "users", perm: permOperator,
			in: api.UserCreate{}, out: api.User{}, status: created, h: s.createUser},
		{method: get, path: "/v1/users/{user}", id: "getUser", summary: "Show a user", tag: "users", perm: permOperator,
			out: api.User{}, status: ok, h: s.getUser},
		{method: del, path: "/v1/users/{user}", id: "deleteUser", summary: "Delete a user", tag: "users", perm: permOperator,
			status: none, h: s.deleteUser},
		{method: get, path: "/v1/flavors", id: "listFlavors", summary: "List flavors", tag: "catalogue", perm: permAuthenticated,
			out: api.Page[api.Flavor]{}, status: ok, query: pageParams, h: s.listFlavors},
		{method: put, path: "/v1/flavors/{flavor}", id: "putFlavor", summary: "Publish or change a flavor", tag: "catalogue", perm: permOperator,
			in: api.Flavor{}, out: api.Flavor{}, status: ok, h: s.putFlavor},
		{method: del, path: "/v1/flavors/{flavor}", id: "deleteFlavor", summary: "Withdraw a flavor", tag: "catalogue", perm: permOperator,
			status: none, h: s.deleteFlavor},
		{method: get, path: "/v1/templates", id: "listTemplates", summary: "List templates", tag: "catalogue", perm: permAuthenticated,
			out: api.Page[api.Template]{}, status: ok, query: pageParams, h: s.listTemplates},
		{method: put, path: "/v1/templates/{template}", id: "putTemplate", summary: "Publish or change a template", tag: "catalogue", perm: permOperator,
			in: api.Template{}, out: api.Template{}, status: ok, h: s.putTemplate},
		{method: del, path: "/v1/templates/{template}", id: "deleteTemplate", summary: "Withdraw a template", tag: "catalogue", perm: permOperator,
			status: none, h: s.deleteTemplate},
		{method: get, path: "/v1/audit", id: "listAudit", summary: "Read the audit log (operators: all entries)", tag: "audit", perm: permOperator,
			out: api.Page[api.AuditEntry]{}, status: ok, query: pageParams, h: s.listAudit},
		{method: get, path: "/v1/audit/verify", id: "verifyAudit", summary: "Verify the audit log's chain and checkpoints (operators)", tag: "audit", perm: permOperator,
			out: api.AuditVerification{}, status: ok, h: s.verifyAudit},
		{method: get, path: "/v1/cloud/status", id: "cloudStatus", summary: "Observe the cloud and compare it with the spec, as holdfast status does (operators)", tag: "cloud", perm: permOperator,
			out: api.CloudStatus{}, status: ok, h: s.cloudStatus},

		// A tenant's own.
		{method: get, path: T + "/members", id: "listMembers", summary: "List a tenant's members", tag: "members", perm: permTenantRead,
			out: api.Page[api.Membership]{}, status: ok, h: s.listMembers},
		{method: put, path: T + "/members", id: "setMember", summary: "Change a member's role (operators: also add any user)", tag: "members", perm: permTenantAdmin,
			in: api.MembershipCreate{}, out: api.Membership{}, status: ok, h: s.setMember},
		{method: get, path: T + "/invitations", id: "listInvitations", summary: "List the tenant's open invitations", tag: "members", perm: permTenantAdmin,
			out: api.Page[api.Invitation]{}, status: ok, h: s.listInvitations},
		{method: post, path: T + "/invitations", id: "invite", summary: "Invite a user to join (answered alike whether or not the user exists)", tag: "members", perm: permTenantAdmin,
			in: api.InvitationCreate{}, out: api.Invitation{}, status: accepted, h: s.invite},
		{method: del, path: T + "/invitations/{invitation}", id: "withdrawInvitation", summary: "Withdraw an invitation", tag: "members", perm: permTenantAdmin,
			status: none, h: s.withdrawInvitation},
		{method: post, path: T + "/users", id: "createTenantUser", summary: "Create a user who is a member of this tenant", tag: "members", perm: permTenantAdmin,
			in: api.UserCreate{}, out: api.User{}, status: created, query: []param{{"role", "Role in the tenant (default member).", "string"}}, h: s.createTenantUser},
		{method: del, path: T + "/members/{user}", id: "removeMember", summary: "Remove a user from the tenant", tag: "members", perm: permTenantAdmin,
			status: none, h: s.removeMember},
		{method: get, path: T + "/audit", id: "listTenantAudit", summary: "Read the tenant's audit entries", tag: "audit", perm: permTenantAdmin,
			out: api.Page[api.AuditEntry]{}, status: ok, query: pageParams, h: s.listAudit},
		{method: get, path: T + "/projects", id: "listProjects", summary: "List projects", tag: "projects", perm: permTenantRead,
			out: api.Page[api.Project]{}, status: ok, query: pageParams, h: s.listProjects},
		{method: post, path: T + "/projects", id: "createProject", summary: "Create a project", tag: "projects", perm: permTenantAdmin,
			in: api.ProjectCreate{}, out: api.Project{}, status: created, h: s.createProject},
		{method: get, path: T + "/projects/{project}", id: "getProject", summary: "Show a project", tag: "projects", perm: permTenantRead,
			out: api.Project{}, status: ok, h: s.getProject},
		{method: del, path: T + "/projects/{project}", id: "deleteProject", summary: "Delete a project without instances", tag: "projects", perm: permTenantAdmin,
			status: none, h: s.deleteProject},
		{method: get, path: T + "/sshkeys", id: "listSSHKeys", summary: "List SSH keys", tag: "sshkeys", perm: permTenantRead,
			out: api.Page[api.SSHKey]{}, status: ok, query: pageParams, h: s.listSSHKeys},
		{method: post, path: T + "/sshkeys", id: "createSSHKey", summary: "Add an SSH key", tag: "sshkeys", perm: permTenantWrite,
			in: api.SSHKeyCreate{}, out: api.SSHKey{}, status: created, h: s.createSSHKey},
		{method: get, path: T + "/sshkeys/{sshkey}", id: "getSSHKey", summary: "Show an SSH key", tag: "sshkeys", perm: permTenantRead,
			out: api.SSHKey{}, status: ok, h: s.getSSHKey},
		{method: del, path: T + "/sshkeys/{sshkey}", id: "deleteSSHKey", summary: "Delete an SSH key", tag: "sshkeys", perm: permTenantWrite,
			status: none, h: s.deleteSSHKey},
		{method: get, path: T + "/networks", id: "listNetworks", summary: "List networks", tag: "networks", perm: permTenantRead,
			out: api.Page[api.Network]{}, status: ok, query: pageParams, h: s.listNetworks},
		{method: post, path: T + "/networks", id: "createNetwork", summary: "Create a network from the operator's pool", tag: "networks", perm: permTenantAdmin,
			in: api.NetworkCreate{}, out: api.Operation{}, status: accepted, h: s.createNetwork},
		{method: get, path: T + "/networks/{network}", id: "getNetwork", summary: "Show a network", tag: "networks", perm: permTenantRead,
			out: api.Network{}, status: ok, h: s.getNetwork},
		{method: del, path: T + "/networks/{network}", id: "deleteNetwork", summary: "Delete a network without instances", tag: "networks", perm: permTenantAdmin,
			out: api.Operation{}, status: accepted, h: s.deleteNetwork},
		{method: get, path: T + "/instances", id: "listInstances", summary: "List instances", tag: "instances", perm: permTenantRead,
			out: api.Page[api.Instance]{}, status: ok, query: pageParams, h: s.listInstances},
		{method: post, path: T + "/instances", id: "createInstance", summary: "Create an instance", tag: "instances", perm: permTenantWrite,
			in: api.InstanceCreate{}, out: api.Operation{}, status: accepted, h: s.createInstance},
		{method: get, path: T + "/instances/{instance}", id: "getInstance", summary: "Show an instance", tag: "instances", perm: permTenantRead,
			out: api.Instance{}, status: ok, h: s.getInstance},
		{method: del, path: T + "/instances/{instance}", id: "deleteInstance", summary: "Delete an instance", tag: "instances", perm: permTenantWrite,
			out: api.Operation{}, status: accepted, ifMatch: true, h: s.deleteInstance},
		{method: post, path: T + "/instances/{instance}/start", id: "startInstance", summary: "Start an instance", tag: "instances", perm: permTenantWrite,
			out: api.Operation{}, status: accepted, ifMatch: true, h: s.instanceAction("start")},
		{method: post, path: T + "/instances/{instance}/stop", id: "stopInstance", summary: "Stop an instance", tag: "instances", perm: permTenantWrite,
			out: api.Operation{}, status: accepted, ifMatch: true, h: s.instanceAction("stop")},
		{method: post, path: T + "/instances/{instance}/reboot", id: "rebootInstance", summary: "Reboot an instance", tag: "instances", perm: permTenantWrite,
			out: api.Operation{}, status: accepted, ifMatch: true, h: s.instanceAction("reboot")},
		{method: post, path: T + "/instances/{instance}/resize", id: "resizeInstance", summary: "Change an instance's flavor", tag: "instances", perm: permTenantWrite,
			in: api.InstanceResize{}, out: api.Operation{}, status: accepted, ifMatch: true, h: s.instanceAction("resize")},
		{method: post, path: T + "/instances/{instance}/rebuild", id: "rebuildInstance", summary: "Recreate an instance from a template", tag: "instances", perm: permTenantWrite,
			in: api.InstanceRebuild{}, out: api.Operation{}, status: accepted, ifMatch: true, h: s.instanceAction("rebuild")},
		{method: get, path: T + "/operations", id: "listTenantOperations", summary: "List the tenant's operations, newest first", tag: "operations", perm: permTenantRead,
			out: api.Page[api.Operation]{}, status: ok, query: pageParams, h: s.listOperations},

		// Operations and events: scoped by the tenant they concern.
		{method: get, path: "/v1/operations/{operation}", id: "getOperation", summary: "Show an operation", tag: "operations", perm: permAuthenticated,
			out: api.Operation{}, status: ok, h: s.getOperation},
		{method: get, path: "/v1/operations/{operation}/wait", id: "waitOperation", summary: "Wait for an operation to finish (or the timeout)", tag: "operations", perm: permAuthenticated,
			out: api.Operation{}, status: ok, query: []param{{"timeout", "Longest wait as a Go duration, at most 60s (default 30s).", "string"}}, h: s.waitOperation},
		{method: get, path: "/v1/events", id: "events", summary: "Stream lifecycle events the caller may see (Server-Sent Events)", tag: "events", perm: permAuthenticated,
			status: ok, stream: "text/event-stream", query: []param{{"tenant", "Only this tenant's events.", "string"}}, h: s.events},
	}
}
