-- The control plane's records: who may log in, which tenants exist, what
-- they own, and the operations that change it. Infrastructure itself is
-- never described here: tenant networks and instances are turned into a
-- spec file (tenants.yaml) that the reconciler converges like any other.
--
-- This is the newest schema, which a fresh database is made with; a
-- database written by an earlier one is brought to it by the migrations in
-- migrate.go first. Ids are never reused: every id the control plane hands
-- out is AUTOINCREMENT (or random), so that a token, key or cache naming a
-- deleted user or tenant can never come to name a new one.

CREATE TABLE IF NOT EXISTS tenants (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL DEFAULT '',
	q_instances   INTEGER NOT NULL,
	q_vcpus       INTEGER NOT NULL,
	q_memory_mib  INTEGER NOT NULL,
	q_disk_gib    INTEGER NOT NULL,
	q_networks    INTEGER NOT NULL,
	created_at    TEXT NOT NULL,
	version       INTEGER NOT NULL DEFAULT 1
);

-- Names of deleted tenants. A tenant's name is how the audit log, the
-- operations, the event stream and the infrastructure (acme--web) know
-- it, so a name is never given to another tenant: its history stays its
-- own.
CREATE TABLE IF NOT EXISTS retired_tenants (
	name       TEXT PRIMARY KEY,
	deleted_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT NOT NULL UNIQUE,
	email         TEXT NOT NULL DEFAULT '',
	password_hash TEXT NOT NULL DEFAULT '',    -- argon2id; empty: no password login (OIDC only)
	operator      INTEGER NOT NULL DEFAULT 0,
	totp_sealed   BLOB,                        -- AES-GCM sealed TOTP secret once confirmed
	totp_pending  BLOB,                        -- sealed secret of an enrollment not yet confirmed
	oidc_issuer   TEXT,
	oidc_subject  TEXT,
	created_at    TEXT NOT NULL,
	version       INTEGER NOT NULL DEFAULT 1,
	UNIQUE (oidc_issuer, oidc_subject)
);

CREATE TABLE IF NOT EXISTS memberships (
	tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	role      TEXT NOT NULL CHECK (role IN ('tenant-admin', 'member', 'viewer')),
	PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_user ON memberships(user_id);

-- Invitations into a tenant, made by its admins and accepted or declined by
-- the invited user. The invited name is recorded whether or not a user of
-- that name exists, so that the inviter learns nothing from the answer;
-- user_id is the user the name meant when invited, the only one who sees
-- and may accept it (NULL: nobody). A user deleted since leaves it NULL,
-- not deleted, for the same reason; a user made later under that name is
-- someone else and gets nothing. expires_at ends it unanswered.
CREATE TABLE IF NOT EXISTS invitations (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	user_id     INTEGER REFERENCES users(id) ON DELETE SET NULL,
	role        TEXT NOT NULL CHECK (role IN ('tenant-admin', 'member', 'viewer')),
	invited_by  TEXT NOT NULL,
	created_at  TEXT NOT NULL,
	expires_at  TEXT NOT NULL,
	UNIQUE (tenant_id, name)
);
CREATE INDEX IF NOT EXISTS invitations_user ON invitations(user_id);

CREATE TABLE IF NOT EXISTS projects (
	tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE IF NOT EXISTS sshkeys (
	tenant_id   INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	public_key  TEXT NOT NULL,
	fingerprint TEXT NOT NULL,
	created_at  TEXT NOT NULL,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE IF NOT EXISTS flavors (
	name       TEXT PRIMARY KEY,
	cpus       INTEGER NOT NULL,
	memory_mib INTEGER NOT NULL,
	disk_gib   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS templates (
	name        TEXT PRIMARY KEY,
	image       TEXT NOT NULL,
	os          TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT ''
);

-- slot is the network's index in the operator's pool: its VLAN is the
-- pool's first VLAN + slot and its subnet the slot-th subnet of the pool,
-- so a unique slot is a unique VLAN, VNI and CIDR.
CREATE TABLE IF NOT EXISTS networks (
	tenant_id  INTEGER NOT NULL REFERENCES tenants(id),
	name       TEXT NOT NULL,
	slot       INTEGER NOT NULL UNIQUE,
	zone       TEXT NOT NULL UNIQUE,
	cidr       TEXT NOT NULL UNIQUE,
	gateway    TEXT NOT NULL,
	vlan       INTEGER NOT NULL UNIQUE,
	status     TEXT NOT NULL,
	created_at TEXT NOT NULL,
	version    INTEGER NOT NULL DEFAULT 1,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE IF NOT EXISTS instances (
	tenant_id  INTEGER NOT NULL REFERENCES tenants(id),
	name       TEXT NOT NULL,
	project    TEXT NOT NULL,
	flavor     TEXT NOT NULL,
	template   TEXT NOT NULL,
	image      TEXT NOT NULL,
	network    TEXT NOT NULL,
	ssh_keys   TEXT NOT NULL,      -- JSON: [{"name":..,"key":..}] as put into the instance
	power      TEXT NOT NULL,
	status     TEXT NOT NULL,
	cpus       INTEGER NOT NULL,
	memory_mib INTEGER NOT NULL,
	disk_gib   INTEGER NOT NULL,
	reboot     INTEGER NOT NULL DEFAULT 0,
	rebuild    INTEGER NOT NULL DEFAULT 0,
	vmid       INTEGER NOT NULL DEFAULT 0,
	ip         TEXT NOT NULL DEFAULT '',
	fqdn       TEXT NOT NULL DEFAULT '',
	node       TEXT NOT NULL DEFAULT '',
	spec_name  TEXT NOT NULL UNIQUE,
	error      TEXT NOT NULL DEFAULT '',
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	version    INTEGER NOT NULL DEFAULT 1,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE IF NOT EXISTS apikeys (
	id            TEXT PRIMARY KEY,
	user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name          TEXT NOT NULL,
	secret_sealed BLOB NOT NULL,
	created_at    TEXT NOT NULL,
	expires_at    TEXT,
	last_used_at  TEXT,
	revoked_at    TEXT
);
CREATE INDEX IF NOT EXISTS apikeys_user ON apikeys(user_id);

CREATE TABLE IF NOT EXISTS operations (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	kind       TEXT NOT NULL,
	tenant     TEXT NOT NULL DEFAULT '',
	target     TEXT NOT NULL,              -- API path of the object
	object     TEXT NOT NULL DEFAULT '',   -- its spec name
	status     TEXT NOT NULL,
	progress   INTEGER NOT NULL DEFAULT 0,
	message    TEXT NOT NULL DEFAULT '',
	error      TEXT NOT NULL DEFAULT '',   -- JSON problem when failed
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_open ON operations(status) WHERE status IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS settings (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);

-- Passkeys (WebAuthn credentials), each one of a user's authenticators.
-- credential_id is what the authenticator names it by, unique over all
-- users: an assertion names its credential, and the credential its user.
-- public_key is the COSE key, sign_count the last signature counter seen
-- (a counter that goes back means a cloned authenticator), flags the
-- authenticator data flags of the last use (backup eligibility must not
-- change), transports the browser's hints, comma-separated.
CREATE TABLE IF NOT EXISTS passkeys (
	id                 TEXT PRIMARY KEY,
	user_id            INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name               TEXT NOT NULL,
	credential_id      BLOB NOT NULL UNIQUE,
	public_key         BLOB NOT NULL,
	sign_count         INTEGER NOT NULL DEFAULT 0,
	flags              INTEGER NOT NULL DEFAULT 0,
	transports         TEXT NOT NULL DEFAULT '',
	aaguid             BLOB,
	attestation_format TEXT NOT NULL DEFAULT '',
	created_at         TEXT NOT NULL,
	last_used_at       TEXT,
	UNIQUE (user_id, name)
);

-- WebAuthn ceremonies under way: the challenge and what it was issued
-- for (go-webauthn's session data, JSON), until the browser answers. A
-- ceremony is taken (deleted) by the answer, right or wrong, so that no
-- challenge is answered twice; one not answered by expires_at is
-- worthless. user_id is the user a registration is for, or the user a
-- login named (NULL with named = 1: a name that is no account);
-- source is the address that asked, to bound how many one may hold;
-- expires_at is in Unix milliseconds, so that it compares as a number.
CREATE TABLE IF NOT EXISTS webauthn_ceremonies (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('registration', 'login')),
	user_id    INTEGER REFERENCES users(id) ON DELETE CASCADE,
	named      INTEGER NOT NULL DEFAULT 0,
	source     TEXT NOT NULL,
	data       BLOB NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
CREATE INDEX IF NOT EXISTS webauthn_ceremonies_source ON webauthn_ceremonies(source);
