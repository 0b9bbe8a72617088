package tenant

import (
	"database/sql"
	"strings"
	"time"

	"github.com/holdfast/holdfast/api"
)

// UserRecord is a user with what authentication needs. The TOTP secrets
// are sealed; only the server's Box opens them.
type UserRecord struct {
	ID           int64
	PasswordHash string
	TOTPSealed   []byte
	TOTPPending  []byte
	OIDCIssuer   string
	OIDCSubject  string
	api.User
	// Tenants are the tenants of Memberships, in the same order, read
	// with the user (authorize needs no other read).
	Tenants []TenantRecord
}

// userCols are the columns userFields reads, as in a query of users;
// userColsOfU the same of users aliased u.
const (
	userCols    = `id, name, email, password_hash, operator, totp_sealed, totp_pending, coalesce(oidc_issuer, ''), coalesce(oidc_subject, ''), created_at, version`
	userColsOfU = `u.id, u.name, u.email, u.password_hash, u.operator, u.totp_sealed, u.totp_pending, coalesce(u.oidc_issuer, ''), coalesce(u.oidc_subject, ''), u.created_at, u.version`
)

// userFields is a user being scanned from userCols.
type userFields struct {
	r       UserRecord
	created string
}

func (f *userFields) dest() []any {
	r := &f.r
	return []any{&r.ID, &r.Name, &r.Email, &r.PasswordHash, &r.Operator, &r.TOTPSealed, &r.TOTPPending, &r.OIDCIssuer, &r.OIDCSubject, &f.created, &r.Version}
}

func (f *userFields) record() UserRecord {
	f.r.CreatedAt = parseTime(f.created)
	f.r.TOTP = len(f.r.TOTPSealed) > 0
	return f.r
}

func scanUser(sc scanner) (UserRecord, error) {
	var f userFields
	err := sc.Scan(f.dest()...)
	return f.record(), err
}

// CreateUser creates a user with an argon2id password hash (empty: the
// user logs in only through OIDC).
func (t *Tx) CreateUser(u api.UserCreate, hash string) (UserRecord, error) {
	_, err := t.exec(`INSERT INTO users(name, email, password_hash, operator, created_at) VALUES(?, ?, ?, ?, ?)`,
		u.Name, u.Email, hash, u.Operator, fmtTime(t.now))
	if isUnique(err) {
		return UserRecord{}, ErrExists
	}
	if err != nil {
		return UserRecord{}, err
	}
	return t.User(u.Name)
}

// User reads a user by name, with memberships.
func (t *Tx) User(name string) (UserRecord, error) {
	return t.user(`u.name = ?`, name)
}

// UserByID reads a user by id, with memberships.
func (t *Tx) UserByID(id int64) (UserRecord, error) {
	return t.user(`u.id = ?`, id)
}

// UserByOIDC finds the user linked to an OIDC identity.
func (t *Tx) UserByOIDC(issuer, subject string) (UserRecord, error) {
	return t.user(`u.oidc_issuer = ? AND u.oidc_subject = ?`, issuer, subject)
}

// user reads the user where says (of users aliased u), with their
// memberships, in one query: a user is read on every request
// (authenticate), and on PostgreSQL each query is a round trip.
func (t *Tx) user(where string, args ...any) (UserRecord, error) {
	var f userFields
	err := t.holder(&f, `SELECT `+userColsOfU+membershipsOfU+` FROM users u`+membershipsJoin+` WHERE `+where+` ORDER BY te.name`, args, nil)
	return f.record(), err
}

// membershipsOfU and membershipsJoin add the memberships of u, a user,
// with their tenants to a query: one row each, or one row of NULLs for
// none.
const (
	membershipsOfU  = `, ` + tenantColsOfTe + `, coalesce(m.role, '')`
	membershipsJoin = ` LEFT JOIN memberships m ON m.user_id = u.id LEFT JOIN tenants te ON te.id = m.tenant_id`
)

// holder runs a query of a user with their memberships (membershipsOfU
// last), each row the user's columns (after before's, which are the same
// in every row) and a membership's, into f; no row is ErrNotFound.
func (t *Tx) holder(f *userFields, query string, args []any, before []any) error {
	rows, err := t.query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var te tenantFields
	var role string
	dest := append(append(append(before, f.dest()...), te.dest()...), &role)
	found := false
	f.r.Memberships = []api.Membership{}
	f.r.Tenants = nil
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		found = true
		if te.r.ID != 0 {
			t := te.record()
			f.r.Memberships = append(f.r.Memberships, api.Membership{Tenant: t.Name, User: f.r.Name, Role: role})
			f.r.Tenants = append(f.r.Tenants, t)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

// Users lists users by name after the given one; tenantID > 0 limits the
// list to that tenant's members.
func (t *Tx) Users(after string, limit int, tenantID int64) ([]UserRecord, error) {
	var rows *sql.Rows
	var err error
	if tenantID > 0 {
		rows, err = t.query(`SELECT `+userCols+` FROM users WHERE name > ? AND id IN (SELECT user_id FROM memberships WHERE tenant_id = ?) ORDER BY name LIMIT ?`, after, tenantID, limit)
	} else {
		rows, err = t.query(`SELECT `+userCols+` FROM users WHERE name > ? ORDER BY name LIMIT ?`, after, limit)
	}
	out, err := collect(rows, err, scanUser)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Memberships, err = t.memberships(`m.user_id = ?`, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CountOperators counts operator accounts (the first start creates one).
func (t *Tx) CountOperators() (int, error) {
	var n int
	err := t.row(`SELECT count(*) FROM users WHERE operator = 1`).Scan(&n)
	return n, err
}

// DeleteUser deletes a user, their memberships and API keys.
func (t *Tx) DeleteUser(id int64) error {
	return affected(t.exec(`DELETE FROM users WHERE id = ?`, id))
}

// SetPassword replaces a user's password hash.
func (t *Tx) SetPassword(id int64, hash string) error {
	return affected(t.exec(`UPDATE users SET password_hash = ?, version = version + 1 WHERE id = ?`, hash, id))
}

// SetTOTPPending stores a sealed TOTP secret awaiting confirmation.
func (t *Tx) SetTOTPPending(id int64, sealed []byte) error {
	return affected(t.exec(`UPDATE users SET totp_pending = ? WHERE id = ?`, sealed, id))
}

// ConfirmTOTP makes the pending TOTP secret the user's second factor.
func (t *Tx) ConfirmTOTP(id int64, sealed []byte) error {
	return affected(t.exec(`UPDATE users SET totp_sealed = ?, totp_pending = NULL, version = version + 1 WHERE id = ?`, sealed, id))
}

// LinkOIDC links a user to an OIDC identity.
func (t *Tx) LinkOIDC(id int64, issuer, subject string) error {
	_, err := t.exec(`UPDATE users SET oidc_issuer = ?, oidc_subject = ? WHERE id = ?`, issuer, subject, id)
	if isUnique(err) {
		return ErrExists
	}
	return err
}

func (t *Tx) memberships(where string, args ...any) ([]api.Membership, error) {
	rows, err := t.query(`SELECT te.name, u.name, m.role FROM memberships m JOIN tenants te ON te.id = m.tenant_id JOIN users u ON u.id = m.user_id WHERE `+where+` ORDER BY te.name, u.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []api.Membership{}
	for rows.Next() {
		var m api.Membership
		if err := rows.Scan(&m.Tenant, &m.User, &m.Role); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Members lists a tenant's memberships.
func (t *Tx) Members(tenantID int64) ([]api.Membership, error) {
	return t.memberships(`m.tenant_id = ?`, tenantID)
}

// Role is the user's role in a tenant; ErrNotFound when not a member.
func (t *Tx) Role(tenantID, userID int64) (string, error) {
	var role string
	err := t.row(`SELECT role FROM memberships WHERE tenant_id = ? AND user_id = ?`, tenantID, userID).Scan(&role)
	return role, notFound(err)
}

// Member is the id and role of the member of a tenant named name;
// ErrNotFound when no such user is a member, whether or not they exist
// (one query either way).
func (t *Tx) Member(tenantID int64, name string) (userID int64, role string, err error) {
	err = t.row(`SELECT u.id, m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ? AND u.name = ?`, tenantID, name).
		Scan(&userID, &role)
	return userID, role, notFound(err)
}

// SetMember adds a user to a tenant or changes their role. A member has
// nothing left to accept: an invitation of theirs into the tenant goes.
func (t *Tx) SetMember(tenantID, userID int64, role string) error {
	_, err := t.exec(`INSERT INTO memberships(tenant_id, user_id, role) VALUES(?, ?, ?) ON CONFLICT(tenant_id, user_id) DO UPDATE SET role = excluded.role`, tenantID, userID, role)
	if err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM invitations WHERE tenant_id = ? AND user_id = ?`, tenantID, userID)
	return err
}

// RemoveMember removes a user from a tenant.
func (t *Tx) RemoveMember(tenantID, userID int64) error {
	return affected(t.exec(`DELETE FROM memberships WHERE tenant_id = ? AND user_id = ?`, tenantID, userID))
}

// APIKeyRecord is a key with its sealed secret.
type APIKeyRecord struct {
	UserID  int64
	Sealed  []byte
	Revoked bool
	api.APIKey
}

// CreateAPIKey stores a key; the secret is sealed by the caller.
func (t *Tx) CreateAPIKey(id string, userID int64, name string, sealed []byte, expires *string) error {
	_, err := t.exec(`INSERT INTO apikeys(id, user_id, name, secret_sealed, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?)`,
		id, userID, name, sealed, fmtTime(t.now), expires)
	return err
}

const keyCols = `k.id, k.user_id, u.name, k.name, k.secret_sealed, k.created_at, k.expires_at, k.last_used_at, k.revoked_at IS NOT NULL`

// keyFields is a key being scanned from keyCols.
type keyFields struct {
	r             APIKeyRecord
	created       string
	expires, used sql.NullString
}

func (f *keyFields) dest() []any {
	r := &f.r
	return []any{&r.ID, &r.UserID, &r.User, &r.Name, &r.Sealed, &f.created, &f.expires, &f.used, &r.Revoked}
}

func (f *keyFields) record() APIKeyRecord {
	f.r.CreatedAt = parseTime(f.created)
	f.r.ExpiresAt = nullTime(f.expires)
	f.r.LastUsedAt = nullTime(f.used)
	return f.r
}

func scanKey(sc scanner) (APIKeyRecord, error) {
	var f keyFields
	err := sc.Scan(f.dest()...)
	return f.record(), err
}

// APIKey reads a key by id, revoked or not.
func (t *Tx) APIKey(id string) (APIKeyRecord, error) {
	r, err := scanKey(t.row(`SELECT `+keyCols+` FROM apikeys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`, id))
	return r, notFound(err)
}

// APIKeyHolder reads a key by id, revoked or not, with its user and their
// memberships, in one query (authenticate reads them on every signed
// request).
func (t *Tx) APIKeyHolder(id string) (APIKeyRecord, UserRecord, error) {
	k, u, _, err := t.APIKeyHolderWith(id, "", nil)
	return k, u, err
}

// APIKeyHolderWith is APIKeyHolder run with an insert (PostgreSQL only)
// in the same statement, in one round trip: inserted says whether the
// insert added a row. A signed request's nonce is spent so
// (session.SpendNonce).
func (t *Tx) APIKeyHolderWith(id, insert string, args []any) (APIKeyRecord, UserRecord, bool, error) {
	var k keyFields
	var u userFields
	query := `SELECT ` + keyCols + `, ` + userColsOfU + membershipsOfU + ` FROM apikeys k JOIN users u ON u.id = k.user_id` +
		membershipsJoin + ` WHERE k.id = ? ORDER BY te.name`
	var before []any
	var inserted int64
	if insert != "" {
		// The insert runs once, whatever the rows of the select.
		query = `WITH ins AS (` + insert + ` RETURNING 1) SELECT (SELECT count(*) FROM ins), ` + strings.TrimPrefix(query, `SELECT `)
		before = []any{&inserted}
	}
	err := t.holder(&u, query, append(args, id), append(before, k.dest()...))
	return k.record(), u.record(), inserted > 0, err
}

// APIKeys lists a user's keys that are not revoked.
func (t *Tx) APIKeys(userID int64) ([]APIKeyRecord, error) {
	rows, err := t.query(`SELECT `+keyCols+` FROM apikeys k JOIN users u ON u.id = k.user_id WHERE k.user_id = ? AND k.revoked_at IS NULL ORDER BY k.created_at, k.id`, userID)
	return collect(rows, err, scanKey)
}

// RevokeAPIKey revokes one of the user's keys.
func (t *Tx) RevokeAPIKey(userID int64, id string) error {
	return affected(t.exec(`UPDATE apikeys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL`, fmtTime(t.now), id, userID))
}

// TouchAPIKey records a key's use at a time of the caller's clock.
func (t *Tx) TouchAPIKey(id string, at time.Time) error {
	_, err := t.exec(`UPDATE apikeys SET last_used_at = ? WHERE id = ?`, fmtTime(at), id)
	return err
}
