package server

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// do runs f in a transaction of the request's context.
func (q *request) do(s *Server, f func(*tenant.Tx) error) error {
	if q.tenant != nil {
		// A tenant's changes take turns (its quota).
		return s.db.DoLocked(q.r.Context(), tenant.TenantLock(q.tenant.ID), f)
	}
	return s.db.Do(q.r.Context(), f)
}

// read runs f, which only reads, for the request (tenant.Store.Read).
func (q *request) read(s *Server, f func(*tenant.Tx) error) error {
	return s.db.Read(q.r.Context(), f)
}

// Tenants.

func (s *Server) listTenants(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var member int64
	if !q.caller.user.Operator {
		member = q.caller.user.ID
	}
	var items []api.Tenant
	err = q.do(s, func(tx *tenant.Tx) error {
		ts, err := tx.Tenants(after, limit+1, member)
		for _, t := range ts {
			items = append(items, t.Tenant)
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(t api.Tenant) string { return t.Name }))
}

func (s *Server) createTenant(q *request) error {
	var in api.TenantCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	quota := s.defaultQuota()
	if in.Quota != nil {
		quota = *in.Quota
	}
	var t tenant.TenantRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		t, err = tx.CreateTenant(in.Name, in.DisplayName, quota)
		return err
	})
	if err != nil {
		return err
	}
	q.tenant = &t
	s.emit(api.Event{Type: "tenant.created", Tenant: t.Name, Object: "/v1/tenants/" + t.Name})
	q.w.Header().Set("Location", "/v1/tenants/"+t.Name)
	return q.versioned(http.StatusCreated, t.Tenant, t.Version)
}

func (s *Server) defaultQuota() api.Quota {
	if s.cfg.DefaultQuota != nil {
		return *s.cfg.DefaultQuota
	}
	return api.Quota{Instances: 10, VCPUs: 20, MemoryMiB: 40960, DiskGiB: 500, Networks: 2}
}

func (s *Server) getTenant(q *request) error {
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		q.tenant.Usage, err = tx.Usage(q.tenant.ID)
		return err
	})
	if err != nil {
		return err
	}
	return q.versioned(http.StatusOK, q.tenant.Tenant, q.tenant.Version)
}

func (s *Server) updateTenant(q *request) error {
	var in api.TenantUpdate
	if err := q.decode(&in); err != nil {
		return err
	}
	v, err := q.ifMatch()
	if err != nil {
		return err
	}
	var t tenant.TenantRecord
	err = q.do(s, func(tx *tenant.Tx) error {
		t, err = tx.UpdateTenant(q.tenant.Name, v, in)
		return err
	})
	if err != nil {
		return err
	}
	s.emit(api.Event{Type: "tenant.updated", Tenant: t.Name, Object: "/v1/tenants/" + t.Name})
	return q.versioned(http.StatusOK, t.Tenant, t.Version)
}

func (s *Server) deleteTenant(q *request) error {
	err := q.do(s, func(tx *tenant.Tx) error { return tx.DeleteTenant(q.tenant.Name) })
	if errors.Is(err, tenant.ErrInUse) {
		return problem(http.StatusConflict, "in-use", "the tenant still owns networks or instances; delete them first")
	}
	if err != nil {
		return err
	}
	s.hub.authChanged() // its members are members no more
	s.emit(api.Event{Type: "tenant.deleted", Tenant: q.tenant.Name, Object: "/v1/tenants/" + q.tenant.Name})
	return q.reply(http.StatusNoContent, nil)
}

// Users and memberships.

func (s *Server) listUsers(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.User
	err = q.do(s, func(tx *tenant.Tx) error {
		us, err := tx.Users(after, limit+1, 0)
		for _, u := range us {
			items = append(items, u.User)
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(u api.User) string { return u.Name }))
}

// newUser checks and hashes a new user's password; the caller creates it.
func (s *Server) newUser(q *request) (api.UserCreate, string, error) {
	var in api.UserCreate
	if err := q.decode(&in); err != nil {
		return in, "", err
	}
	if in.Operator && !q.caller.user.Operator {
		return in, "", problem(http.StatusForbidden, "forbidden", "only operators create operators")
	}
	if err := auth.CheckPasswordLen(in.Password); err != nil {
		return in, "", badField("password", err.Error())
	}
	hash, err := s.hashPassword(q.r.Context(), in.Password)
	if err != nil {
		return in, "", err
	}
	return in, hash, nil
}

func (s *Server) createUser(q *request) error {
	in, hash, err := s.newUser(q)
	if err != nil {
		return err
	}
	var u tenant.UserRecord
	err = q.do(s, func(tx *tenant.Tx) error {
		u, err = tx.CreateUser(in, hash)
		return err
	})
	if err != nil {
		return err
	}
	q.w.Header().Set("Location", "/v1/users/"+u.Name)
	return q.versioned(http.StatusCreated, u.User, u.Version)
}

func (s *Server) createTenantUser(q *request) error {
	role := q.r.URL.Query().Get("role")
	if role == "" {
		role = api.RoleMember
	}
	if _, ok := rolePerms[role]; !ok {
		return pageProblem("role", "must be one of tenant-admin, member, viewer")
	}
	in, hash, err := s.newUser(q)
	if err != nil {
		return err
	}
	if in.Operator {
		return badField("operator", "a tenant's user cannot be an operator")
	}
	var u tenant.UserRecord
	err = q.do(s, func(tx *tenant.Tx) error {
		if u, err = tx.CreateUser(in, hash); err != nil {
			return err
		}
		if err := tx.SetMember(q.tenant.ID, u.ID, role); err != nil {
			return err
		}
		u, err = tx.UserByID(u.ID)
		return err
	})
	if err != nil {
		return err
	}
	return q.versioned(http.StatusCreated, u.User, u.Version)
}

func (s *Server) getUser(q *request) error {
	var u tenant.UserRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		u, err = tx.User(q.r.PathValue("user"))
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("user", q.r.PathValue("user"))
	}
	if err != nil {
		return err
	}
	return q.versioned(http.StatusOK, u.User, u.Version)
}

func (s *Server) deleteUser(q *request) error {
	name := q.r.PathValue("user")
	if name == q.caller.user.Name {
		return problem(http.StatusConflict, "self", "you cannot delete yourself")
	}
	var id int64
	err := q.do(s, func(tx *tenant.Tx) error {
		u, err := tx.User(name)
		if err != nil {
			return err
		}
		id = u.ID
		return tx.DeleteUser(u.ID)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("user", name)
	}
	if err != nil {
		return err
	}
	s.sess.revokeUser(q.r.Context(), id)
	s.hub.authChanged(id) // for streams by API key too
	return q.reply(http.StatusNoContent, nil)
}

func (s *Server) listMembers(q *request) error {
	var ms []api.Membership
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		ms, err = tx.Members(q.tenant.ID)
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(api.Page[api.Membership]{Items: ms})
}

// setMember adds a user to the tenant or changes a member's role.
// Operators add anyone. A tenant admin changes the roles of the tenant's
// members; anyone else they invite (invite), so that nobody joins a tenant
// without consent, and the answer for someone who is not a member is the
// same whether or not such a user exists. Roles go no higher than
// tenant-admin, the admin's own.
func (s *Server) setMember(q *request) error {
	var in api.MembershipCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	q.audit = map[string]string{"user": in.User, "role": in.Role}
	var userID int64
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		if q.role == "operator" {
			var u tenant.UserRecord
			u, err = tx.User(in.User)
			if errors.Is(err, tenant.ErrNotFound) {
				return badField("user", "no such user")
			}
			userID = u.ID
		} else if userID, _, err = tx.Member(q.tenant.ID, in.User); errors.Is(err, tenant.ErrNotFound) {
			return problem(http.StatusConflict, "not-a-member", fmt.Sprintf("%q is not a member of %s: invite them (POST /v1/tenants/%s/invitations)",
				in.User, q.tenant.Name, q.tenant.Name))
		}
		if err != nil {
			return err
		}
		return tx.SetMember(q.tenant.ID, userID, in.Role)
	})
	if err != nil {
		return err
	}
	s.hub.authChanged(userID)
	return q.ok(api.Membership{Tenant: q.tenant.Name, User: in.User, Role: in.Role})
}

func (s *Server) removeMember(q *request) error {
	name := q.r.PathValue("user")
	var userID int64
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		if userID, _, err = tx.Member(q.tenant.ID, name); err != nil {
			return err
		}
		return tx.RemoveMember(q.tenant.ID, userID)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("member", name)
	}
	if err != nil {
		return err
	}
	s.hub.authChanged(userID)
	return q.reply(http.StatusNoContent, nil)
}

// Invitations.

const (
	// invitationTTL is how long an invitation waits for its answer.
	invitationTTL = 7 * 24 * time.Hour
	// maxInvitations bounds a tenant's open invitations: each is a row
	// whether or not its name is a user's.
	maxInvitations = 100
)

// invite invites a user into the tenant. The invitation is recorded, and
// answered, the same way whether or not a user of that name exists: the
// inviter learns nothing about other tenants' users. Only that user sees
// it, and joins by accepting it.
func (s *Server) invite(q *request) error {
	var in api.InvitationCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	q.audit = map[string]string{"user": in.User, "role": in.Role}
	now := s.now()
	var inv tenant.InvitationRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		if _, _, err := tx.Member(q.tenant.ID, in.User); err == nil {
			return problem(http.StatusConflict, "already-member", fmt.Sprintf("%q is a member of %s already: change their role with PUT /v1/tenants/%s/members",
				in.User, q.tenant.Name, q.tenant.Name))
		} else if !errors.Is(err, tenant.ErrNotFound) {
			return err
		}
		open, err := tx.TenantInvitations(q.tenant.ID, now)
		if err != nil {
			return err
		}
		renewed := slices.ContainsFunc(open, func(r tenant.InvitationRecord) bool { return r.User == in.User })
		if len(open) >= maxInvitations && !renewed {
			return problem(http.StatusConflict, "too-many-invitations",
				fmt.Sprintf("the tenant has %d open invitations, the most it may: withdraw some first", len(open)))
		}
		inv, err = tx.Invite(q.tenant.ID, in.User, in.Role, q.caller.user.Name, now, now.Add(invitationTTL))
		return err
	})
	if err != nil {
		return err
	}
	return q.reply(http.StatusAccepted, inv.Invitation)
}

func (s *Server) listInvitations(q *request) error {
	items := []api.Invitation{}
	err := q.do(s, func(tx *tenant.Tx) error {
		open, err := tx.TenantInvitations(q.tenant.ID, s.now())
		for _, r := range open {
			items = append(items, r.Invitation)
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(api.Page[api.Invitation]{Items: items}) // at most maxInvitations: one page
}

// invitationID is the path's invitation; an id that is not a number names
// no invitation.
func invitationID(q *request) (int64, error) {
	v := q.r.PathValue("invitation")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound("invitation", v)
	}
	return id, nil
}

func (s *Server) withdrawInvitation(q *request) error {
	id, err := invitationID(q)
	if err != nil {
		return err
	}
	err = q.do(s, func(tx *tenant.Tx) error {
		inv, err := tx.Invitation(id)
		if err != nil || inv.TenantID != q.tenant.ID {
			return tenant.ErrNotFound
		}
		return tx.DeleteInvitation(id)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("invitation", q.r.PathValue("invitation"))
	}
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

func (s *Server) listMyInvitations(q *request) error {
	now := s.now()
	items := []api.Invitation{}
	err := q.do(s, func(tx *tenant.Tx) error {
		mine, err := tx.UserInvitations(q.caller.user.ID)
		for _, r := range mine {
			if r.Live(now) {
				items = append(items, r.Invitation)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(api.Page[api.Invitation]{Items: items})
}

// myInvitation reads an invitation the caller may answer; any other is
// not found, exactly as one that does not exist.
func (s *Server) myInvitation(q *request, tx *tenant.Tx) (tenant.InvitationRecord, error) {
	id, err := invitationID(q)
	if err != nil {
		return tenant.InvitationRecord{}, err
	}
	inv, err := tx.Invitation(id)
	if err != nil || inv.UserID != q.caller.user.ID {
		return inv, notFound("invitation", q.r.PathValue("invitation"))
	}
	return inv, nil
}

// acceptInvitation makes the caller a member of the invitation's tenant,
// with its role. The audit entry is the tenant's: its admins see who
// joined.
func (s *Server) acceptInvitation(q *request) error {
	var inv tenant.InvitationRecord
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		if inv, err = s.myInvitation(q, tx); err != nil {
			return err
		}
		if !inv.Live(s.now()) {
			return notFound("invitation", q.r.PathValue("invitation"))
		}
		return tx.SetMember(inv.TenantID, q.caller.user.ID, inv.Role) // and the invitation goes
	})
	if err != nil {
		return err
	}
	q.tenant = &tenant.TenantRecord{ID: inv.TenantID, Tenant: api.Tenant{Name: inv.Tenant}}
	q.audit = map[string]string{"role": inv.Role, "invited_by": inv.InvitedBy}
	s.hub.authChanged(q.caller.user.ID)
	return q.ok(api.Membership{Tenant: inv.Tenant, User: q.caller.user.Name, Role: inv.Role})
}

// declineInvitation deletes an invitation of the caller's. The audit
// entry is not the tenant's: declining tells its admins nothing, not even
// that the user exists.
func (s *Server) declineInvitation(q *request) error {
	err := q.do(s, func(tx *tenant.Tx) error {
		inv, err := s.myInvitation(q, tx)
		if err != nil {
			return err
		}
		q.audit = map[string]string{"tenant": inv.Tenant}
		return tx.DeleteInvitation(inv.ID)
	})
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

// Catalogue.

func (s *Server) listFlavors(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.Flavor
	err = q.do(s, func(tx *tenant.Tx) error {
		items, err = tx.Flavors(after, limit+1)
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(f api.Flavor) string { return f.Name }))
}

func (s *Server) putFlavor(q *request) error {
	var in api.Flavor
	if err := q.decode(&in); err != nil {
		return err
	}
	if in.Name != q.r.PathValue("flavor") {
		return badField("name", "must be the name in the path")
	}
	if err := q.do(s, func(tx *tenant.Tx) error { return tx.PutFlavor(in) }); err != nil {
		return err
	}
	return q.ok(in)
}

func (s *Server) deleteFlavor(q *request) error {
	name := q.r.PathValue("flavor")
	err := q.do(s, func(tx *tenant.Tx) error { return tx.DeleteFlavor(name) })
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("flavor", name)
	}
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

func (s *Server) listTemplates(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.Template
	err = q.do(s, func(tx *tenant.Tx) error {
		items, err = tx.Templates(after, limit+1)
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(t api.Template) string { return t.Name }))
}

func (s *Server) putTemplate(q *request) error {
	var in api.Template
	if err := q.decode(&in); err != nil {
		return err
	}
	if in.Name != q.r.PathValue("template") {
		return badField("name", "must be the name in the path")
	}
	if err := q.do(s, func(tx *tenant.Tx) error { return tx.PutTemplate(in) }); err != nil {
		return err
	}
	return q.ok(in)
}

func (s *Server) deleteTemplate(q *request) error {
	name := q.r.PathValue("template")
	err := q.do(s, func(tx *tenant.Tx) error { return tx.DeleteTemplate(name) })
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("template", name)
	}
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

// Projects.

func (s *Server) listProjects(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.Project
	err = q.do(s, func(tx *tenant.Tx) error {
		items, err = tx.Projects(q.tenant.ID, after, limit+1)
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(p api.Project) string { return p.Name }))
}

func (s *Server) createProject(q *request) error {
	var in api.ProjectCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	var p api.Project
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		p, err = tx.CreateProject(q.tenant.ID, in)
		return err
	})
	if err != nil {
		return err
	}
	return q.reply(http.StatusCreated, p)
}

func (s *Server) getProject(q *request) error {
	name := q.r.PathValue("project")
	var p api.Project
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		p, err = tx.Project(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("project", name)
	}
	if err != nil {
		return err
	}
	return q.ok(p)
}

func (s *Server) deleteProject(q *request) error {
	name := q.r.PathValue("project")
	err := q.do(s, func(tx *tenant.Tx) error { return tx.DeleteProject(q.tenant.ID, name) })
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("project", name)
	}
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}

// SSH keys.

func (s *Server) listSSHKeys(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	var items []api.SSHKey
	err = q.do(s, func(tx *tenant.Tx) error {
		items, err = tx.SSHKeys(q.tenant.ID, after, limit+1)
		return err
	})
	if err != nil {
		return err
	}
	return q.ok(pageOf(items, limit, func(k api.SSHKey) string { return k.Name }))
}

// parseAuthorizedKey accepts exactly one OpenSSH public key line and
// returns it normalized with its fingerprint.
func parseAuthorizedKey(line string) (string, string, error) {
	if strings.ContainsAny(line, "\r\n") && strings.TrimSpace(line) != strings.TrimRight(line, "\r\n") {
		return "", "", errors.New("must be a single line")
	}
	pk, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "", "", errors.New("is not an OpenSSH public key")
	}
	if err := spec.CheckSSHKey(strings.TrimSpace(line)); err != nil {
		return "", "", err // a key the cloud's spec would refuse (DSA, options)
	}
	if len(options) > 0 || len(strings.TrimSpace(string(rest))) > 0 {
		return "", "", errors.New("must be one key without options")
	}
	norm := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	if comment != "" && !strings.ContainsAny(comment, "\r\n") {
		norm += " " + comment
	}
	sum := sha256.Sum256(pk.Marshal())
	return norm, "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

func (s *Server) createSSHKey(q *request) error {
	var in api.SSHKeyCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	line, fp, err := parseAuthorizedKey(in.PublicKey)
	if err != nil {
		return badField("public_key", err.Error())
	}
	var k api.SSHKey
	err = q.do(s, func(tx *tenant.Tx) error {
		k, err = tx.CreateSSHKey(q.tenant.ID, api.SSHKey{Name: in.Name, PublicKey: line, Fingerprint: fp})
		return err
	})
	if err != nil {
		return err
	}
	return q.reply(http.StatusCreated, k)
}

func (s *Server) getSSHKey(q *request) error {
	name := q.r.PathValue("sshkey")
	var k api.SSHKey
	err := q.do(s, func(tx *tenant.Tx) error {
		var err error
		k, err = tx.SSHKey(q.tenant.ID, name)
		return err
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("SSH key", name)
	}
	if err != nil {
		return err
	}
	return q.ok(k)
}

func (s *Server) deleteSSHKey(q *request) error {
	name := q.r.PathValue("sshkey")
	err := q.do(s, func(tx *tenant.Tx) error { return tx.DeleteSSHKey(q.tenant.ID, name) })
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("SSH key", name)
	}
	if err != nil {
		return err
	}
	return q.reply(http.StatusNoContent, nil)
}
