package server

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/tenant"
)

// do runs f in a transaction of the request's context.
func (q *request) do(s *Server, f func(*tenant.Tx) error) error {
	return s.db.Do(q.r.Context(), f)
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

func (s *Server) setMember(q *request) error {
	var in api.MembershipCreate
	if err := q.decode(&in); err != nil {
		return err
	}
	var userID int64
	err := q.do(s, func(tx *tenant.Tx) error {
		u, err := tx.User(in.User)
		if errors.Is(err, tenant.ErrNotFound) {
			return badField("user", "no such user")
		}
		if err != nil {
			return err
		}
		userID = u.ID
		return tx.SetMember(q.tenant.ID, u.ID, in.Role)
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
		u, err := tx.User(name)
		if err != nil {
			return err
		}
		userID = u.ID
		return tx.RemoveMember(q.tenant.ID, u.ID)
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
