// Package api holds the wire types of the Holdfast control plane: what the
// server answers and what the client sends. The server (internal/server)
// and the Go client (client/) both use these types, so they cannot drift;
// the OpenAPI document at /v1/openapi.json is generated from them, and the
// `doc` tags below are its descriptions.
package api

import (
	"fmt"
	"net/http"
	"time"
)

// Version is the API's version; additive changes keep it.
const Version = "1.0.0"

// Roles a user may hold in a tenant. Operators are not members of tenants:
// the operator flag on a user grants everything.
const (
	RoleTenantAdmin = "tenant-admin"
	RoleMember      = "member"
	RoleViewer      = "viewer"
)

// Problem is an RFC 9457 problem document: every error the API answers.
type Problem struct {
	Type     string       `json:"type" doc:"URI naming the kind of problem; about:blank when only the status matters."`
	Title    string       `json:"title" doc:"Short summary of the kind of problem."`
	Status   int          `json:"status" doc:"HTTP status code."`
	Detail   string       `json:"detail,omitempty" doc:"What went wrong with this request."`
	Instance string       `json:"instance,omitempty" doc:"The request path."`
	Errors   []FieldError `json:"errors,omitempty" doc:"Which fields of the request were wrong, and why."`
}

// FieldError names one bad field of a request.
type FieldError struct {
	Field   string `json:"field" doc:"JSON path of the field, e.g. name or quota.instances."`
	Message string `json:"message" doc:"Why the value was refused."`
}

func (p *Problem) Error() string {
	s := fmt.Sprintf("%d %s", p.Status, p.Title)
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	for _, e := range p.Errors {
		s += fmt.Sprintf("; %s: %s", e.Field, e.Message)
	}
	return s
}

// Page is one page of a list. Lists are ordered by name (operations and
// audit entries by time) and walked with an opaque cursor.
type Page[T any] struct {
	Items []T    `json:"items" doc:"The page's items."`
	Next  string `json:"next,omitempty" doc:"Cursor of the next page (pass as ?cursor=); absent on the last page."`
}

// Quota bounds what a tenant may hold; Usage says what it holds. Zero in a
// quota means none allowed.
type Quota struct {
	Instances int   `json:"instances" min:"0" doc:"Instances."`
	VCPUs     int   `json:"vcpus" min:"0" doc:"vCPUs over all instances."`
	MemoryMiB int64 `json:"memory_mib" min:"0" doc:"Memory over all instances, MiB."`
	DiskGiB   int64 `json:"disk_gib" min:"0" doc:"Disk over all instances, GiB."`
	Networks  int   `json:"networks" min:"0" doc:"Tenant networks."`
}

// Tenant is a customer of the cloud.
type Tenant struct {
	Name        string    `json:"name" doc:"Unique name, used in paths and in the spec."`
	DisplayName string    `json:"display_name,omitempty" doc:"Human name."`
	Quota       Quota     `json:"quota" doc:"Limits."`
	Usage       Quota     `json:"usage" doc:"What the tenant holds now."`
	CreatedAt   time.Time `json:"created_at"`
	Version     int64     `json:"version" doc:"Changes on every update; also the ETag."`
}

// TenantCreate creates a tenant (operators).
type TenantCreate struct {
	Name        string `json:"name" pattern:"^[a-z](-?[a-z0-9])*$" maxlen:"32" doc:"1-32 lower-case letters, digits and single dashes, starting with a letter and not ending in a dash. It prefixes the spec names of the tenant's networks and instances."`
	DisplayName string `json:"display_name,omitempty" maxlen:"200"`
	Quota       *Quota `json:"quota,omitempty" doc:"Limits; the server's default quota when omitted."`
}

// TenantUpdate changes a tenant (operators); absent fields stay.
type TenantUpdate struct {
	DisplayName *string `json:"display_name,omitempty" maxlen:"200"`
	Quota       *Quota  `json:"quota,omitempty"`
}

// User is a person who logs in.
type User struct {
	Name        string       `json:"name" doc:"Login name."`
	Email       string       `json:"email,omitempty"`
	Operator    bool         `json:"operator" doc:"Operators administer the whole cloud."`
	TOTP        bool         `json:"totp" doc:"Whether a TOTP second factor is enrolled."`
	Memberships []Membership `json:"memberships" doc:"Tenants the user belongs to."`
	CreatedAt   time.Time    `json:"created_at"`
	Version     int64        `json:"version"`
}

// UserCreate creates a user (operators, or tenant admins for their tenant
// with tenant and role set).
type UserCreate struct {
	Name     string `json:"name" pattern:"^[a-z][a-z0-9._-]{1,62}$"`
	Email    string `json:"email,omitempty" maxlen:"254"`
	Password string `json:"password" minlen:"12" maxlen:"1024" doc:"At least 12 characters."`
	Operator bool   `json:"operator,omitempty" doc:"Only operators may create operators."`
}

// PasswordChange changes the caller's password.
type PasswordChange struct {
	Current string `json:"current" maxlen:"1024"`
	New     string `json:"new" minlen:"12" maxlen:"1024"`
}

// Membership is a user's role in a tenant.
type Membership struct {
	Tenant string `json:"tenant"`
	User   string `json:"user"`
	Role   string `json:"role" enum:"tenant-admin,member,viewer"`
}

// MembershipCreate adds a user to a tenant.
type MembershipCreate struct {
	User string `json:"user"`
	Role string `json:"role" enum:"tenant-admin,member,viewer"`
}

// Invitation asks a user to join a tenant. It is recorded, and answered
// to the inviter, the same whether or not a user of that name exists;
// only that user sees it (GET /v1/me/invitations) and becomes a member by
// accepting it.
type Invitation struct {
	ID        int64     `json:"id" doc:"Names the invitation in paths."`
	Tenant    string    `json:"tenant"`
	User      string    `json:"user" doc:"The name invited."`
	Role      string    `json:"role" enum:"tenant-admin,member,viewer" doc:"The role the user gets on accepting."`
	InvitedBy string    `json:"invited_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at" doc:"Unanswered until then, it ends."`
}

// InvitationCreate invites a user into a tenant (tenant admins).
type InvitationCreate struct {
	User string `json:"user" pattern:"^[a-z][a-z0-9._-]{1,62}$" doc:"The user's name."`
	Role string `json:"role" enum:"tenant-admin,member,viewer"`
}

// TOTPEnrollment is a new, not yet confirmed second factor.
type TOTPEnrollment struct {
	Secret string `json:"secret" doc:"Base32 secret for authenticator apps."`
	URI    string `json:"uri" doc:"otpauth:// URI (QR code content)."`
}

// TOTPConfirm confirms an enrollment with a current code.
type TOTPConfirm struct {
	Code string `json:"code" pattern:"^[0-9]{6}$"`
}

// LoginRequest logs in with a password and, once the user has a second
// factor, a TOTP code or a passkey.
type LoginRequest struct {
	User     string            `json:"user" maxlen:"64"`
	Password string            `json:"password" maxlen:"1024"`
	TOTP     string            `json:"totp,omitempty" doc:"Six-digit code; a user with TOTP and no passkey must give it."`
	Passkey  *PasskeyAssertion `json:"passkey,omitempty" doc:"A passkey's answer to a challenge from /v1/auth/passkey/challenge: the second factor instead of a TOTP code. A user with a passkey must give this or a TOTP code (if enrolled)."`
	Cookie   bool              `json:"cookie,omitempty" doc:"For browsers: set the session as HttpOnly cookies (answering who logged in, no tokens); needs the X-CSRF-Token header equal to the __Host-hf_csrf cookie."`
}

// RefreshRequest exchanges a refresh token for new tokens.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token" maxlen:"256"`
}

// Tokens is a session: a short-lived access token and a rotating refresh
// token. Presenting a refresh token twice ends the whole session.
type Tokens struct {
	AccessToken  string    `json:"access_token" doc:"Bearer token, valid for expires_in seconds."`
	RefreshToken string    `json:"refresh_token" doc:"One-time token for POST /v1/auth/refresh."`
	TokenType    string    `json:"token_type" enum:"Bearer"`
	ExpiresIn    int       `json:"expires_in"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// APIKey is a key whose requests are signed with HMAC-SHA256. It acts as
// its user.
type APIKey struct {
	ID         string     `json:"id" doc:"Key id, sent in every signed request."`
	Name       string     `json:"name"`
	User       string     `json:"user"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// APIKeyCreate creates a key for the caller.
type APIKeyCreate struct {
	Name      string `json:"name" pattern:"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$"`
	ExpiresIn string `json:"expires_in,omitempty" doc:"Lifetime as a Go duration, e.g. 720h; no expiry when omitted."`
}

// APIKeySecret is a key with its secret: answered once, at creation or
// rotation, and never again.
type APIKeySecret struct {
	APIKey
	Secret string `json:"secret" doc:"Base64url HMAC secret. Store it now: it is not shown again."`
}

// SSHKey is a public key tenants put into instances.
type SSHKey struct {
	Name        string    `json:"name"`
	PublicKey   string    `json:"public_key"`
	Fingerprint string    `json:"fingerprint" doc:"SHA256 fingerprint as OpenSSH prints it."`
	CreatedAt   time.Time `json:"created_at"`
}

// SSHKeyCreate adds a key to a tenant.
type SSHKeyCreate struct {
	Name      string `json:"name" pattern:"^[a-z][a-z0-9-]{0,62}$"`
	PublicKey string `json:"public_key" maxlen:"16384" doc:"One OpenSSH authorized_keys line."`
}

// Flavor is a size the operator publishes.
type Flavor struct {
	Name      string `json:"name" pattern:"^[a-z][a-z0-9.-]{0,62}$"`
	CPUs      int    `json:"cpus" min:"1" max:"256"`
	MemoryMiB int64  `json:"memory_mib" min:"16" max:"4194304"`
	DiskGiB   int64  `json:"disk_gib" min:"0" max:"65536"`
}

// Template is an image the operator publishes.
type Template struct {
	Name        string `json:"name" pattern:"^[a-z](-?[a-z0-9])*$" maxlen:"52" doc:"1-52 lower-case letters, digits and single dashes, starting with a letter and not ending in a dash: the template is catalogue--<name> in the cloud's spec."`
	Image       string `json:"image" maxlen:"4096" doc:"Engine image reference (a rootfs directory on the local engine, a template VMID on Proxmox); empty runs the host's file system on the local engine."`
	OS          string `json:"os,omitempty" maxlen:"100"`
	Description string `json:"description,omitempty" maxlen:"1000"`
}

// Network is a tenant-owned zone allocated from the operator's pool.
type Network struct {
	Name      string    `json:"name"`
	Tenant    string    `json:"tenant"`
	Zone      string    `json:"zone" doc:"Name of the zone in the cloud's spec."`
	CIDR      string    `json:"cidr"`
	Gateway   string    `json:"gateway"`
	VLAN      int       `json:"vlan"`
	VNI       int       `json:"vni"`
	Status    string    `json:"status" enum:"creating,ready,deleting,failed"`
	CreatedAt time.Time `json:"created_at"`
	Version   int64     `json:"version"`
}

// NetworkCreate creates a tenant network.
type NetworkCreate struct {
	Name string `json:"name" pattern:"^[a-z](-?[a-z0-9])*$" maxlen:"31" doc:"1-31 lower-case letters, digits and single dashes, starting with a letter and not ending in a dash. The network is the zone <tenant>--<name> of the cloud's spec, and that name has at most 63 characters."`
}

// Instance states.
const (
	StatusCreating = "creating"
	StatusRunning  = "running"
	StatusStopped  = "stopped"
	StatusDeleting = "deleting"
	StatusFailed   = "failed"
)

// Instance is a tenant's VM (a system container on the local engine).
type Instance struct {
	Name      string    `json:"name"`
	Tenant    string    `json:"tenant"`
	Project   string    `json:"project"`
	Flavor    string    `json:"flavor"`
	Template  string    `json:"template"`
	Network   string    `json:"network"`
	SSHKeys   []string  `json:"ssh_keys" doc:"Names of the tenant's SSH keys put into the instance."`
	Power     string    `json:"power" enum:"running,stopped" doc:"Desired power state."`
	Status    string    `json:"status" enum:"creating,running,stopped,deleting,failed" doc:"What the cloud last reported."`
	CPUs      int       `json:"cpus"`
	MemoryMiB int64     `json:"memory_mib"`
	DiskGiB   int64     `json:"disk_gib"`
	VMID      int       `json:"vmid,omitempty"`
	IP        string    `json:"ip,omitempty"`
	FQDN      string    `json:"fqdn,omitempty"`
	Node      string    `json:"node,omitempty"`
	Spec      string    `json:"spec_name" doc:"Name of the instance in the cloud's spec."`
	Error     string    `json:"error,omitempty" doc:"Why the last change failed."`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int64     `json:"version"`
}

// InstanceCreate creates an instance.
type InstanceCreate struct {
	Name     string   `json:"name" pattern:"^[a-z](-?[a-z0-9])*$" maxlen:"31" doc:"1-31 lower-case letters, digits and single dashes, starting with a letter and not ending in a dash. The instance is <tenant>--<name> in the cloud's spec, and that name has at most 40 characters (the path of its control socket is bounded)."`
	Project  string   `json:"project,omitempty" doc:"Project (default: default)."`
	Flavor   string   `json:"flavor"`
	Template string   `json:"template"`
	Network  string   `json:"network"`
	SSHKeys  []string `json:"ssh_keys,omitempty" maxitems:"32"`
}

// InstanceResize changes an instance's flavor.
type InstanceResize struct {
	Flavor string `json:"flavor"`
}

// InstanceRebuild recreates an instance from a template, discarding its
// state.
type InstanceRebuild struct {
	Template string `json:"template,omitempty" doc:"New template; the current one when omitted."`
}

// Project groups a tenant's instances.
type Project struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// ProjectCreate creates a project.
type ProjectCreate struct {
	Name        string `json:"name" pattern:"^[a-z][a-z0-9-]{0,62}$"`
	Description string `json:"description,omitempty" maxlen:"1000"`
}

// Operation states.
const (
	OpPending   = "pending"
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
)

// Operation is long work started by a request that answered 202.
type Operation struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind" doc:"What it does, e.g. instance.create."`
	Tenant    string    `json:"tenant,omitempty"`
	Target    string    `json:"target" doc:"Path of the object it changes."`
	Status    string    `json:"status" enum:"pending,running,succeeded,failed"`
	Progress  int       `json:"progress" min:"0" max:"100" doc:"Percent done."`
	Message   string    `json:"message,omitempty" doc:"What it is doing now."`
	Error     *Problem  `json:"error,omitempty" doc:"Why it failed."`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Done reports whether the operation has finished.
func (o *Operation) Done() bool { return o.Status == OpSucceeded || o.Status == OpFailed }

// Event is a lifecycle event on /v1/events.
type Event struct {
	ID     int64             `json:"id"`
	Type   string            `json:"type" doc:"e.g. instance.created, instance.running, operation.succeeded."`
	Tenant string            `json:"tenant,omitempty"`
	Object string            `json:"object" doc:"Path of the object."`
	Time   time.Time         `json:"time"`
	Data   map[string]string `json:"data,omitempty"`
}

// AuditEntry is one entry of the tamper-evident audit log.
type AuditEntry struct {
	Seq    int64             `json:"seq"`
	Time   time.Time         `json:"time"`
	Actor  string            `json:"actor"`
	Tenant string            `json:"tenant,omitempty"`
	Action string            `json:"action"`
	Object string            `json:"object,omitempty"`
	Source string            `json:"source,omitempty"`
	Result string            `json:"result"`
	Detail map[string]string `json:"detail,omitempty"`
	Hash   string            `json:"hash" doc:"SHA-256 of this entry, chained to the previous one."`
}

// Me is the caller.
type Me struct {
	User    User     `json:"user"`
	Via     string   `json:"via" enum:"session,apikey" doc:"How the request was authenticated."`
	APIKey  string   `json:"api_key,omitempty" doc:"Key id when via is apikey."`
	Methods []string `json:"methods,omitempty" doc:"How the session logged in: pwd, otp, passkey, oidc. A passkey alone (methods [passkey]) is multi-factor: the authenticator verified its user."`
}

// Health is the answer of /healthz and /readyz.
type Health struct {
	Status string            `json:"status" enum:"ok,unavailable"`
	Checks map[string]string `json:"checks,omitempty"`
	Role   string            `json:"role,omitempty" enum:"leader,follower" doc:"In /readyz: whether this replica reconciles (leader) or serves the API while another replica does (follower)."`
}

// A browser holds its session in cookies instead of an Authorization
// header: a script must never see a token (HttpOnly), a token must never
// travel in clear (Secure) or with a request another site started
// (SameSite=Strict), and the __Host- prefix pins each cookie to the
// origin that set it. A login with cookie set answers with them.
const (
	CookieAccess  = "__Host-hf_access"
	CookieRefresh = "__Host-hf_refresh"
	CookieCSRF    = "__Host-hf_csrf"
	// HeaderCSRF must carry the CSRF cookie's value on every
	// cookie-authenticated request that changes something (and on a
	// login asking for cookies). Only a page of this origin can know it
	// (the portal writes it into each page); a request another site
	// makes a browser send carries the cookies but not the header.
	HeaderCSRF = "X-CSRF-Token"
)

// SessionCookie is one of the cookies above, with the attributes they
// all have; an empty value deletes it.
func SessionCookie(name, value string) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if value == "" {
		c.MaxAge = -1
	}
	return c
}

// AuditVerification is the audit log checked by the server that writes
// it: the chain, every checkpoint's signature, and the checkpoints the
// server published. A copy of the published file kept elsewhere, checked
// with `holdfast audit verify --checkpoints`, proves more: that the
// server did not rewrite both.
type AuditVerification struct {
	OK          bool     `json:"ok"`
	Entries     int64    `json:"entries" doc:"Entries examined."`
	LastSeq     int64    `json:"last_seq" doc:"Seq of the newest entry."`
	Checkpoints int      `json:"checkpoints" doc:"Stored checkpoints examined."`
	Published   int      `json:"published" doc:"Published checkpoints examined."`
	Covered     int64    `json:"covered" doc:"Newest entry a good checkpoint vouches for."`
	Problems    []string `json:"problems,omitempty" doc:"What is wrong, one line each."`
	Limits      []string `json:"limits,omitempty" doc:"What the check could not prove."`
}

// CloudStatus is the cloud as `holdfast status` sees it: every
// resource observed and compared with the spec, and how the control
// plane's reconciler last did.
type CloudStatus struct {
	Cloud            string           `json:"cloud"`
	Resources        []ResourceStatus `json:"resources"`
	LastReconcile    *time.Time       `json:"last_reconcile,omitempty" doc:"When the last pass that converged ended."`
	ReconcileError   string           `json:"reconcile_error,omitempty" doc:"Why the last passes failed, while they fail."`
	FailedReconciles int              `json:"failed_reconciles" doc:"Passes in a row that failed."`
}

// ResourceStatus is one resource of the cloud.
type ResourceStatus struct {
	ID    string   `json:"id" doc:"kind/site/name, as in the plan."`
	Kind  string   `json:"kind"`
	Site  string   `json:"site,omitempty"`
	State string   `json:"state" enum:"ok,missing,drifted,unexpected"`
	Drift []string `json:"drift,omitempty" doc:"What was found not as the spec says."`
	Agent string   `json:"agent,omitempty" doc:"The health its guest agent last reported."`
}
