package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
)

// TestDeletedUsersKeyNeverComesBack: an API key used by a user who is then
// deleted is refused from then on — also once a new operator is made, who
// must never be taken for the deleted user (their id is not reused, and
// no cache keeps the key's owner).
func TestDeletedUsersKeyNeverComesBack(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	key := e.apiKey(alice)
	e.must(key, http.StatusOK, "GET", "/v1/me", nil, nil)

	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/users/alice", nil, nil)
	e.must(e.admin, http.StatusCreated, "POST", "/v1/users", api.UserCreate{Name: "root2", Password: "a-long-password-2", Operator: true}, nil)
	for _, path := range []string{"/v1/me", "/v1/users", "/v1/audit"} {
		if status, _, b := e.do(key, "GET", path, nil); status != http.StatusUnauthorized {
			t.Errorf("deleted alice's key, GET %s: %d, want 401: %s", path, status, b)
		}
	}
	// alice's session token is refused too.
	if status, _, b := e.do(alice, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("deleted alice's access token: %d, want 401: %s", status, b)
	}
}

// TestKeyChangedElsewhere: whether a key is live is read from the database
// on every request, so that a key revoked, expired or deleted outside this
// process — by another replica, or by an operator in the database — is
// refused on the next request, however often it was used before.
func TestKeyChangedElsewhere(t *testing.T) {
	e := newEnv(t, Config{})
	db := e.s.db.DB()
	past := e.clock.now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	for _, c := range []struct {
		name, sql string
		args      []any
	}{
		{"revoked", `UPDATE apikeys SET revoked_at = ? WHERE id = ?`, []any{past}},
		{"expired", `UPDATE apikeys SET expires_at = ? WHERE id = ?`, []any{past}},
		{"deleted", `DELETE FROM apikeys WHERE id = ?`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := e.apiKey(e.admin)
			e.must(key, http.StatusOK, "GET", "/v1/me", nil, nil)
			if _, err := db.Exec(c.sql, append(c.args, key.keyID)...); err != nil {
				t.Fatal(err)
			}
			if status, _, b := e.do(key, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
				t.Errorf("key %s in the database: %d, want 401: %s", c.name, status, b)
			}
		})
	}
}

// TestRightsChangeAtOnce: a role change, a removed membership, a revoked or
// rotated key and a deleted user hold from the very next request, for
// sessions and API keys alike.
func TestRightsChangeAtOnce(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.tenantWith("acme", nil, map[string]string{"alice": api.RoleMember})["alice"]
	key := e.apiKey(alice)
	setRole := func(role string) {
		e.must(e.admin, http.StatusOK, "PUT", "/v1/tenants/acme/members", api.MembershipCreate{User: "alice", Role: role}, nil)
	}
	n := 0
	addKey := func(c cred, want int) {
		t.Helper()
		n++
		name := "k" + itoa(int64(n))
		if status, _, b := e.do(c, "POST", "/v1/tenants/acme/sshkeys", api.SSHKeyCreate{Name: name, PublicKey: sshKey(name)}); status != want {
			t.Errorf("%s adds an SSH key: %d, want %d: %s", c.user, status, want, b)
		}
	}
	for _, c := range []cred{alice, key} {
		addKey(c, http.StatusCreated)
	}
	setRole(api.RoleViewer)
	for _, c := range []cred{alice, key} {
		addKey(c, http.StatusForbidden)
		e.must(c, http.StatusOK, "GET", "/v1/tenants/acme", nil, nil)
	}
	setRole(api.RoleTenantAdmin)
	for _, c := range []cred{alice, key} {
		e.must(c, http.StatusOK, "GET", "/v1/tenants/acme/audit", nil, nil)
	}
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/tenants/acme/members/alice", nil, nil)
	for _, c := range []cred{alice, key} {
		if status, _, b := e.do(c, "GET", "/v1/tenants/acme", nil); status != http.StatusNotFound {
			t.Errorf("removed member reads the tenant: %d, want 404: %s", status, b)
		}
	}

	// Rotation and revocation.
	var rotated api.APIKeySecret
	e.must(alice, http.StatusCreated, "POST", "/v1/me/apikeys/"+key.keyID+"/rotate", nil, &rotated)
	if status, _, _ := e.do(key, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("rotated-out key: %d, want 401", status)
	}
	key2 := cred{keyID: rotated.ID, keySecret: mustB64(t, rotated.Secret), user: "alice"}
	e.must(key2, http.StatusOK, "GET", "/v1/me", nil, nil)
	key3 := e.apiKey(alice)
	e.must(alice, http.StatusNoContent, "DELETE", "/v1/me/apikeys/"+key2.keyID, nil, nil)
	if status, _, _ := e.do(key2, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
		t.Errorf("revoked key: %d, want 401", status)
	}

	// Deleting the user ends their sessions and keys.
	e.must(key3, http.StatusOK, "GET", "/v1/me", nil, nil)
	e.must(e.admin, http.StatusNoContent, "DELETE", "/v1/users/alice", nil, nil)
	for _, c := range []cred{alice, key3} {
		if status, _, _ := e.do(c, "GET", "/v1/me", nil); status != http.StatusUnauthorized {
			t.Errorf("deleted user's credential: %d, want 401", status)
		}
	}
}
