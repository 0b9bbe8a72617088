package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/api"
)

// One method per route of the API (internal/server/routes.go), in its
// order. Methods that change a versioned object take its version, sent as
// If-Match: the change is refused with 412 when the object changed since
// it was read. 0 changes it whatever its version.

const (
	get, post, put, patch, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete
)

func one[T any](ctx context.Context, c *Client, k call) (*T, error) {
	var v T
	k.out = &v
	if err := c.do(ctx, k); err != nil {
		return nil, err
	}
	return &v, nil
}

// The caller.

// Me says who the caller is and how they authenticated.
func (c *Client) Me(ctx context.Context) (*api.Me, error) {
	return one[api.Me](ctx, c, call{method: get, path: "/v1/me"})
}

// ChangePassword changes the caller's password. The server ends the
// user's other sessions.
func (c *Client) ChangePassword(ctx context.Context, in api.PasswordChange) error {
	return c.do(ctx, call{method: put, path: "/v1/me/password", in: in})
}

// EnrollTOTP starts enrolling a TOTP second factor: put the secret (or the
// URI, as a QR code) into an authenticator app, then ConfirmTOTP with a
// code it shows. Logins need a code from then on.
func (c *Client) EnrollTOTP(ctx context.Context) (*api.TOTPEnrollment, error) {
	return one[api.TOTPEnrollment](ctx, c, call{method: post, path: "/v1/me/totp"})
}

// ConfirmTOTP finishes an enrollment with a current six-digit code.
func (c *Client) ConfirmTOTP(ctx context.Context, code string) error {
	return c.do(ctx, call{method: post, path: "/v1/me/totp/confirm", in: api.TOTPConfirm{Code: code}})
}

// API keys.

// ListAPIKeys lists the caller's API keys (never their secrets).
func (c *Client) ListAPIKeys(ctx context.Context) ([]api.APIKey, error) {
	return listEvery[api.APIKey](ctx, c, call{method: get, path: "/v1/me/apikeys"})
}

// CreateAPIKey creates an API key for the caller. The answer holds the
// secret, which the server never shows again.
func (c *Client) CreateAPIKey(ctx context.Context, in api.APIKeyCreate) (*api.APIKeySecret, error) {
	return one[api.APIKeySecret](ctx, c, call{method: post, path: "/v1/me/apikeys", in: in})
}

// RotateAPIKey replaces a key by a new one with the same name and expiry;
// the old one stops working at once.
func (c *Client) RotateAPIKey(ctx context.Context, id string) (*api.APIKeySecret, error) {
	return one[api.APIKeySecret](ctx, c, call{method: post, path: "/v1/me/apikeys/{}/rotate", elems: []string{id}})
}

// RevokeAPIKey revokes one of the caller's keys.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) error {
	return c.do(ctx, call{method: del, path: "/v1/me/apikeys/{}", elems: []string{id}})
}

// Tenants.

// ListTenants lists tenants: all of them for operators, the caller's own
// for others; by name.
func (c *Client) ListTenants(ctx context.Context, opts *ListOptions) (*api.Page[api.Tenant], error) {
	return page[api.Tenant](ctx, c, "/v1/tenants", opts)
}

// CreateTenant creates a tenant (operators).
func (c *Client) CreateTenant(ctx context.Context, in api.TenantCreate) (*api.Tenant, error) {
	return one[api.Tenant](ctx, c, call{method: post, path: "/v1/tenants", in: in})
}

// GetTenant shows a tenant with its quota and usage.
func (c *Client) GetTenant(ctx context.Context, name string) (*api.Tenant, error) {
	return one[api.Tenant](ctx, c, call{method: get, path: "/v1/tenants/{}", elems: []string{name}})
}

// UpdateTenant changes a tenant's display name or quota (operators) if
// its version is still version (0: whatever it is).
func (c *Client) UpdateTenant(ctx context.Context, name string, version int64, in api.TenantUpdate) (*api.Tenant, error) {
	return one[api.Tenant](ctx, c, call{method: patch, path: "/v1/tenants/{}", elems: []string{name}, ifMatch: version, in: in})
}

// DeleteTenant deletes a tenant that owns no networks or instances
// (operators).
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/tenants/{}", elems: []string{name}})
}

// Users.

// ListUsers lists users by name (operators).
func (c *Client) ListUsers(ctx context.Context, opts *ListOptions) (*api.Page[api.User], error) {
	return page[api.User](ctx, c, "/v1/users", opts)
}

// CreateUser creates a user (operators).
func (c *Client) CreateUser(ctx context.Context, in api.UserCreate) (*api.User, error) {
	return one[api.User](ctx, c, call{method: post, path: "/v1/users", in: in})
}

// GetUser shows a user with their memberships (operators).
func (c *Client) GetUser(ctx context.Context, name string) (*api.User, error) {
	return one[api.User](ctx, c, call{method: get, path: "/v1/users/{}", elems: []string{name}})
}

// DeleteUser deletes a user and ends their sessions (operators).
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/users/{}", elems: []string{name}})
}

// The catalogue.

// ListFlavors lists the flavors instances may have.
func (c *Client) ListFlavors(ctx context.Context, opts *ListOptions) (*api.Page[api.Flavor], error) {
	return page[api.Flavor](ctx, c, "/v1/flavors", opts)
}

// PutFlavor publishes a flavor or changes it (operators).
func (c *Client) PutFlavor(ctx context.Context, f api.Flavor) (*api.Flavor, error) {
	return one[api.Flavor](ctx, c, call{method: put, path: "/v1/flavors/{}", elems: []string{f.Name}, in: f})
}

// DeleteFlavor withdraws a flavor (operators).
func (c *Client) DeleteFlavor(ctx context.Context, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/flavors/{}", elems: []string{name}})
}

// ListTemplates lists the templates instances may be made from.
func (c *Client) ListTemplates(ctx context.Context, opts *ListOptions) (*api.Page[api.Template], error) {
	return page[api.Template](ctx, c, "/v1/templates", opts)
}

// PutTemplate publishes a template or changes it (operators).
func (c *Client) PutTemplate(ctx context.Context, t api.Template) (*api.Template, error) {
	return one[api.Template](ctx, c, call{method: put, path: "/v1/templates/{}", elems: []string{t.Name}, in: t})
}

// DeleteTemplate withdraws a template (operators).
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/templates/{}", elems: []string{name}})
}

// The audit log.

// ListAudit reads the whole audit log (operators), oldest first.
func (c *Client) ListAudit(ctx context.Context, opts *ListOptions) (*api.Page[api.AuditEntry], error) {
	return page[api.AuditEntry](ctx, c, "/v1/audit", opts)
}

// ListTenantAudit reads a tenant's audit entries (tenant admins).
func (c *Client) ListTenantAudit(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.AuditEntry], error) {
	return page[api.AuditEntry](ctx, c, "/v1/tenants/{}/audit", opts, tenant)
}

// Members.

// ListMembers lists a tenant's members and their roles.
func (c *Client) ListMembers(ctx context.Context, tenant string) ([]api.Membership, error) {
	return listEvery[api.Membership](ctx, c, call{method: get, path: "/v1/tenants/{}/members", elems: []string{tenant}})
}

// SetMember changes the role of a tenant's member (tenant admins), or
// adds any user to the tenant (operators). A tenant admin naming someone
// who is not a member gets a problem of type .../not-a-member (status
// 409), whether or not the user exists: invite them (Invite).
func (c *Client) SetMember(ctx context.Context, tenant string, in api.MembershipCreate) (*api.Membership, error) {
	return one[api.Membership](ctx, c, call{method: put, path: "/v1/tenants/{}/members", elems: []string{tenant}, in: in})
}

// CreateTenantUser creates a user who is a member of the tenant with role
// ("" is api.RoleMember) (tenant admins).
func (c *Client) CreateTenantUser(ctx context.Context, tenant, role string, in api.UserCreate) (*api.User, error) {
	q := url.Values{}
	if role != "" {
		q.Set("role", role)
	}
	return one[api.User](ctx, c, call{method: post, path: "/v1/tenants/{}/users", elems: []string{tenant}, query: q, in: in})
}

// RemoveMember removes a user from a tenant (tenant admins); the user
// stays.
func (c *Client) RemoveMember(ctx context.Context, tenant, user string) error {
	return c.do(ctx, call{method: del, path: "/v1/tenants/{}/members/{}", elems: []string{tenant, user}})
}

// Invitations.

// Invite invites a user into a tenant with a role (tenant admins). The
// answer is the same whether or not a user of that name exists; only that
// user sees the invitation (MyInvitations) and joins by accepting it.
func (c *Client) Invite(ctx context.Context, tenant string, in api.InvitationCreate) (*api.Invitation, error) {
	return one[api.Invitation](ctx, c, call{method: post, path: "/v1/tenants/{}/invitations", elems: []string{tenant}, in: in})
}

// ListInvitations lists a tenant's open invitations (tenant admins).
func (c *Client) ListInvitations(ctx context.Context, tenant string) ([]api.Invitation, error) {
	return listEvery[api.Invitation](ctx, c, call{method: get, path: "/v1/tenants/{}/invitations", elems: []string{tenant}})
}

// WithdrawInvitation withdraws one of a tenant's invitations (tenant
// admins).
func (c *Client) WithdrawInvitation(ctx context.Context, tenant string, id int64) error {
	return c.do(ctx, call{method: del, path: "/v1/tenants/{}/invitations/{}", elems: []string{tenant, strconv.FormatInt(id, 10)}})
}

// MyInvitations lists the invitations into tenants the caller may accept.
func (c *Client) MyInvitations(ctx context.Context) ([]api.Invitation, error) {
	return listEvery[api.Invitation](ctx, c, call{method: get, path: "/v1/me/invitations"})
}

// AcceptInvitation makes the caller a member of the invitation's tenant,
// with its role.
func (c *Client) AcceptInvitation(ctx context.Context, id int64) (*api.Membership, error) {
	return one[api.Membership](ctx, c, call{method: post, path: "/v1/me/invitations/{}/accept", elems: []string{strconv.FormatInt(id, 10)}})
}

// DeclineInvitation declines an invitation of the caller's.
func (c *Client) DeclineInvitation(ctx context.Context, id int64) error {
	return c.do(ctx, call{method: del, path: "/v1/me/invitations/{}", elems: []string{strconv.FormatInt(id, 10)}})
}

// Projects.

// ListProjects lists a tenant's projects.
func (c *Client) ListProjects(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.Project], error) {
	return page[api.Project](ctx, c, "/v1/tenants/{}/projects", opts, tenant)
}

// CreateProject creates a project (tenant admins).
func (c *Client) CreateProject(ctx context.Context, tenant string, in api.ProjectCreate) (*api.Project, error) {
	return one[api.Project](ctx, c, call{method: post, path: "/v1/tenants/{}/projects", elems: []string{tenant}, in: in})
}

// GetProject shows a project.
func (c *Client) GetProject(ctx context.Context, tenant, name string) (*api.Project, error) {
	return one[api.Project](ctx, c, call{method: get, path: "/v1/tenants/{}/projects/{}", elems: []string{tenant, name}})
}

// DeleteProject deletes a project without instances (tenant admins).
func (c *Client) DeleteProject(ctx context.Context, tenant, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/tenants/{}/projects/{}", elems: []string{tenant, name}})
}

// SSH keys.

// ListSSHKeys lists a tenant's SSH keys.
func (c *Client) ListSSHKeys(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.SSHKey], error) {
	return page[api.SSHKey](ctx, c, "/v1/tenants/{}/sshkeys", opts, tenant)
}

// CreateSSHKey adds an OpenSSH public key to a tenant.
func (c *Client) CreateSSHKey(ctx context.Context, tenant string, in api.SSHKeyCreate) (*api.SSHKey, error) {
	return one[api.SSHKey](ctx, c, call{method: post, path: "/v1/tenants/{}/sshkeys", elems: []string{tenant}, in: in})
}

// GetSSHKey shows an SSH key.
func (c *Client) GetSSHKey(ctx context.Context, tenant, name string) (*api.SSHKey, error) {
	return one[api.SSHKey](ctx, c, call{method: get, path: "/v1/tenants/{}/sshkeys/{}", elems: []string{tenant, name}})
}

// DeleteSSHKey deletes an SSH key; instances that have it keep it.
func (c *Client) DeleteSSHKey(ctx context.Context, tenant, name string) error {
	return c.do(ctx, call{method: del, path: "/v1/tenants/{}/sshkeys/{}", elems: []string{tenant, name}})
}

// Networks.

// ListNetworks lists a tenant's networks.
func (c *Client) ListNetworks(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.Network], error) {
	return page[api.Network](ctx, c, "/v1/tenants/{}/networks", opts, tenant)
}

// CreateNetwork creates a network from the operator's pool (tenant
// admins); it is ready when the operation is done.
func (c *Client) CreateNetwork(ctx context.Context, tenant string, in api.NetworkCreate) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: post, path: "/v1/tenants/{}/networks", elems: []string{tenant}, in: in})
}

// GetNetwork shows a network.
func (c *Client) GetNetwork(ctx context.Context, tenant, name string) (*api.Network, error) {
	return one[api.Network](ctx, c, call{method: get, path: "/v1/tenants/{}/networks/{}", elems: []string{tenant, name}})
}

// DeleteNetwork deletes a network without instances (tenant admins).
func (c *Client) DeleteNetwork(ctx context.Context, tenant, name string) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: del, path: "/v1/tenants/{}/networks/{}", elems: []string{tenant, name}})
}

// Instances.

// ListInstances lists a tenant's instances.
func (c *Client) ListInstances(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.Instance], error) {
	return page[api.Instance](ctx, c, "/v1/tenants/{}/instances", opts, tenant)
}

// CreateInstance creates an instance; it runs when the operation is done.
func (c *Client) CreateInstance(ctx context.Context, tenant string, in api.InstanceCreate) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: post, path: "/v1/tenants/{}/instances", elems: []string{tenant}, in: in})
}

// GetInstance shows an instance.
func (c *Client) GetInstance(ctx context.Context, tenant, name string) (*api.Instance, error) {
	return one[api.Instance](ctx, c, call{method: get, path: "/v1/tenants/{}/instances/{}", elems: []string{tenant, name}})
}

// DeleteInstance deletes an instance and its disk.
func (c *Client) DeleteInstance(ctx context.Context, tenant, name string, version int64) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: del, path: "/v1/tenants/{}/instances/{}", elems: []string{tenant, name}, ifMatch: version})
}

// StartInstance starts an instance.
func (c *Client) StartInstance(ctx context.Context, tenant, name string, version int64) (*api.Operation, error) {
	return c.instanceAction(ctx, tenant, name, "start", version, nil)
}

// StopInstance stops an instance.
func (c *Client) StopInstance(ctx context.Context, tenant, name string, version int64) (*api.Operation, error) {
	return c.instanceAction(ctx, tenant, name, "stop", version, nil)
}

// RebootInstance reboots a running instance.
func (c *Client) RebootInstance(ctx context.Context, tenant, name string, version int64) (*api.Operation, error) {
	return c.instanceAction(ctx, tenant, name, "reboot", version, nil)
}

// ResizeInstance gives an instance another flavor. Disks only grow.
func (c *Client) ResizeInstance(ctx context.Context, tenant, name string, version int64, in api.InstanceResize) (*api.Operation, error) {
	return c.instanceAction(ctx, tenant, name, "resize", version, in)
}

// RebuildInstance recreates an instance from a template (its own when
// in.Template is empty), discarding its state.
func (c *Client) RebuildInstance(ctx context.Context, tenant, name string, version int64, in api.InstanceRebuild) (*api.Operation, error) {
	return c.instanceAction(ctx, tenant, name, "rebuild", version, in)
}

func (c *Client) instanceAction(ctx context.Context, tenant, name, action string, version int64, in any) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: post, path: "/v1/tenants/{}/instances/{}/" + action, elems: []string{tenant, name}, ifMatch: version, in: in})
}

// Operations.

// ListOperations lists a tenant's operations, newest first.
func (c *Client) ListOperations(ctx context.Context, tenant string, opts *ListOptions) (*api.Page[api.Operation], error) {
	return page[api.Operation](ctx, c, "/v1/tenants/{}/operations", opts, tenant)
}

// GetOperation shows an operation.
func (c *Client) GetOperation(ctx context.Context, id string) (*api.Operation, error) {
	return one[api.Operation](ctx, c, call{method: get, path: "/v1/operations/{}", elems: []string{id}})
}

// The server itself.

// OpenAPI returns the API's OpenAPI 3.1 document.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	var doc json.RawMessage
	if err := c.do(ctx, call{method: get, path: "/v1/openapi.json", out: &doc, public: true}); err != nil {
		return nil, err
	}
	return doc, nil
}

// Health reports whether the server answers (/healthz).
func (c *Client) Health(ctx context.Context) (*api.Health, error) {
	return one[api.Health](ctx, c, call{method: get, path: "/healthz", public: true})
}

// Ready reports whether the server is ready to serve (/readyz): its
// database answers and its reconciler finished its first pass. A server
// that is not ready answers its checks with status 503, returned here as
// a Health whose Status is "unavailable", not as an error.
func (c *Client) Ready(ctx context.Context) (*api.Health, error) {
	resp, err := c.send(ctx, call{method: get, path: "/readyz", public: true}, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		var h api.Health
		if json.NewDecoder(resp.Body).Decode(&h) == nil && h.Status != "" {
			return &h, nil
		}
		return nil, problemOf(resp)
	}
	var h api.Health
	if err := decode(resp, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// OIDCLoginURL is where a browser starts a login through the server's
// OpenID Connect provider. The flow ends at the server's callback, which
// answers the session's tokens; give them to UseTokens.
func (c *Client) OIDCLoginURL() string {
	return strings.TrimRight(c.base.String(), "/") + "/v1/auth/oidc/login"
}
