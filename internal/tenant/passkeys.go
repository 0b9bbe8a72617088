package tenant

import (
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/holdfast/holdfast/api"
)

// PasskeyRecord is a user's WebAuthn credential with what verifying an
// assertion needs.
type PasskeyRecord struct {
	UserID            int64
	CredentialID      []byte
	PublicKey         []byte // COSE_Key
	SignCount         uint32
	Flags             byte // authenticator data flags of the last use
	Transports        []string
	AAGUID            []byte
	AttestationFormat string
	api.Passkey
}

const passkeyCols = `id, user_id, name, credential_id, public_key, sign_count, flags, transports, aaguid, attestation_format, created_at, last_used_at`

func scanPasskey(sc scanner) (PasskeyRecord, error) {
	var r PasskeyRecord
	var transports, created string
	var used sql.NullString
	var count int64
	err := sc.Scan(&r.ID, &r.UserID, &r.Name, &r.CredentialID, &r.PublicKey, &count, &r.Flags, &transports, &r.AAGUID,
		&r.AttestationFormat, &created, &used)
	r.SignCount = uint32(count)
	if transports != "" {
		r.Transports = strings.Split(transports, ",")
	}
	r.CreatedAt = parseTime(created)
	r.LastUsedAt = nullTime(used)
	return r, err
}

// CreatePasskey stores a credential a user registered. A credential id
// already stored (for anyone) or a name the user already gave is
// ErrExists.
func (t *Tx) CreatePasskey(r PasskeyRecord) (PasskeyRecord, error) {
	_, err := t.exec(`INSERT INTO passkeys(id, user_id, name, credential_id, public_key, sign_count, flags, transports, aaguid, attestation_format, created_at)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.UserID, r.Name, r.CredentialID, r.PublicKey, int64(r.SignCount), r.Flags, strings.Join(r.Transports, ","), r.AAGUID,
		r.AttestationFormat, fmtTime(t.now))
	if isUnique(err) {
		return PasskeyRecord{}, ErrExists
	}
	if err != nil {
		return PasskeyRecord{}, err
	}
	return scanPasskey(t.row(`SELECT `+passkeyCols+` FROM passkeys WHERE id = ?`, r.ID))
}

// Passkeys lists a user's passkeys, oldest first.
func (t *Tx) Passkeys(userID int64) ([]PasskeyRecord, error) {
	rows, err := t.query(`SELECT `+passkeyCols+` FROM passkeys WHERE user_id = ? ORDER BY created_at, id`, userID)
	return collect(rows, err, scanPasskey)
}

// PasskeyByCredential finds the passkey an assertion names, whoever's it
// is.
func (t *Tx) PasskeyByCredential(credentialID []byte) (PasskeyRecord, error) {
	r, err := scanPasskey(t.row(`SELECT `+passkeyCols+` FROM passkeys WHERE credential_id = ?`, credentialID))
	return r, notFound(err)
}

// UsePasskey records a verified assertion: the counter and flags it
// carried, and when (by the caller's clock).
func (t *Tx) UsePasskey(id string, signCount uint32, flags byte, at time.Time) error {
	return affected(t.exec(`UPDATE passkeys SET sign_count = ?, flags = ?, last_used_at = ? WHERE id = ?`, int64(signCount), flags, fmtTime(at), id))
}

// DeletePasskey deletes one of the user's passkeys.
func (t *Tx) DeletePasskey(userID int64, id string) error {
	return affected(t.exec(`DELETE FROM passkeys WHERE id = ? AND user_id = ?`, id, userID))
}

// CountPasskeys is how many passkeys the user has.
func (t *Tx) CountPasskeys(userID int64) (int, error) {
	var n int
	err := t.row(`SELECT count(*) FROM passkeys WHERE user_id = ?`, userID).Scan(&n)
	return n, err
}

// Ceremony kinds.
const (
	CeremonyRegistration = "registration"
	CeremonyLogin        = "login"
)

// Ceremony is a WebAuthn challenge awaiting its answer.
type Ceremony struct {
	ID     string
	Kind   string
	UserID int64 // 0: none
	// Named says a login ceremony was asked for a user by name; with
	// UserID 0 the name was no account, and no answer can succeed.
	Named   bool
	Source  string
	Data    []byte // go-webauthn's session data
	Expires time.Time
}

// ErrTooMany refuses a new ceremony while too many are under way.
var ErrTooMany = errors.New("too many ceremonies under way")

// CeremonyLimits bound the ceremonies under way, which anyone may start
// (a login's): in all, and from one source.
type CeremonyLimits struct {
	Total, PerSource int
}

// CreateCeremony stores a ceremony, first forgetting those expired by
// now; beyond the limits it is ErrTooMany.
func (t *Tx) CreateCeremony(c Ceremony, now time.Time, lim CeremonyLimits) error {
	if _, err := t.exec(`DELETE FROM webauthn_ceremonies WHERE expires_at <= ?`, now.UnixMilli()); err != nil {
		return err
	}
	var total, mine int
	if err := t.row(`SELECT count(*), count(*) FILTER (WHERE source = ?) FROM webauthn_ceremonies`, c.Source).Scan(&total, &mine); err != nil {
		return err
	}
	if total >= lim.Total || mine >= lim.PerSource {
		return ErrTooMany
	}
	var user any
	if c.UserID != 0 {
		user = c.UserID
	}
	_, err := t.exec(`INSERT INTO webauthn_ceremonies(id, kind, user_id, named, source, data, expires_at) VALUES(?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Kind, user, c.Named, c.Source, c.Data, c.Expires.UnixMilli())
	return err
}

// TakeCeremony removes a ceremony and returns it, with ok when it is of
// the kind and has not expired by now. Whatever the answer that follows,
// a challenge is answered once: the transaction must commit even when
// the ceremony is not ok.
func (t *Tx) TakeCeremony(id, kind string, now time.Time) (c Ceremony, ok bool, err error) {
	c = Ceremony{ID: id}
	var user sql.NullInt64
	var expires int64
	err = t.row(`DELETE FROM webauthn_ceremonies WHERE id = ? RETURNING kind, user_id, named, source, data, expires_at`, id).
		Scan(&c.Kind, &user, &c.Named, &c.Source, &c.Data, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Ceremony{}, false, nil
	}
	if err != nil {
		return Ceremony{}, false, err
	}
	c.UserID, c.Expires = user.Int64, time.UnixMilli(expires)
	return c, c.Kind == kind && now.Before(c.Expires), nil
}
