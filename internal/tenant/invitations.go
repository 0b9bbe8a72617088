package tenant

import (
	"database/sql"
	"errors"
	"time"

	"github.com/holdfast/holdfast/api"
)

// InvitationRecord is an invitation with the ids it refers to.
type InvitationRecord struct {
	TenantID int64
	UserID   int64 // 0: the name meant nobody when invited
	api.Invitation
}

// Live reports whether the invitation can still be accepted at now.
func (r InvitationRecord) Live(now time.Time) bool { return now.Before(r.ExpiresAt) }

const invitationCols = `i.id, i.tenant_id, te.name, i.name, coalesce(i.user_id, 0), i.role, i.invited_by, i.created_at, i.expires_at`

func scanInvitation(sc scanner) (InvitationRecord, error) {
	var r InvitationRecord
	var created, expires string
	err := sc.Scan(&r.ID, &r.TenantID, &r.Tenant, &r.User, &r.UserID, &r.Role, &r.InvitedBy, &created, &expires)
	r.CreatedAt, r.ExpiresAt = parseTime(created), parseTime(expires)
	return r, err
}

const invitationFrom = ` FROM invitations i JOIN tenants te ON te.id = i.tenant_id `

// Invite records, at a time of the caller's clock, an invitation of name
// into a tenant with role, replacing one made before. It is recorded the
// same way whether or not a user of that name exists; only the user it
// names now (if any) may accept it.
func (t *Tx) Invite(tenantID int64, name, role, by string, at, expires time.Time) (InvitationRecord, error) {
	var userID sql.NullInt64
	if err := t.row(`SELECT id FROM users WHERE name = ?`, name).Scan(&userID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return InvitationRecord{}, err
	}
	_, err := t.exec(`INSERT INTO invitations(tenant_id, name, user_id, role, invited_by, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(tenant_id, name) DO UPDATE SET user_id = excluded.user_id, role = excluded.role, invited_by = excluded.invited_by,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
		tenantID, name, userID, role, by, fmtTime(at), fmtTime(expires))
	if err != nil {
		return InvitationRecord{}, err
	}
	return scanInvitation(t.row(`SELECT `+invitationCols+invitationFrom+`WHERE i.tenant_id = ? AND i.name = ?`, tenantID, name))
}

// Invitation reads an invitation by id.
func (t *Tx) Invitation(id int64) (InvitationRecord, error) {
	r, err := scanInvitation(t.row(`SELECT `+invitationCols+invitationFrom+`WHERE i.id = ?`, id))
	return r, notFound(err)
}

// UserInvitations lists the invitations a user may answer, expired ones
// included, by tenant.
func (t *Tx) UserInvitations(userID int64) ([]InvitationRecord, error) {
	rows, err := t.query(`SELECT `+invitationCols+invitationFrom+`WHERE i.user_id = ? ORDER BY te.name`, userID)
	return collect(rows, err, scanInvitation)
}

// TenantInvitations lists a tenant's invitations that are live at now,
// by name, and deletes those that have ended.
func (t *Tx) TenantInvitations(tenantID int64, now time.Time) ([]InvitationRecord, error) {
	rows, err := t.query(`SELECT `+invitationCols+invitationFrom+`WHERE i.tenant_id = ? ORDER BY i.name`, tenantID)
	all, err := collect(rows, err, scanInvitation)
	if err != nil {
		return nil, err
	}
	live := all[:0]
	for _, r := range all {
		if r.Live(now) {
			live = append(live, r)
		} else if err := t.DeleteInvitation(r.ID); err != nil {
			return nil, err
		}
	}
	return live, nil
}

// DeleteInvitation deletes an invitation: answered, or withdrawn.
func (t *Tx) DeleteInvitation(id int64) error {
	return affected(t.exec(`DELETE FROM invitations WHERE id = ?`, id))
}
