-- Login sessions of the control plane. Read this file to see the whole data
-- model of package session. Times are Unix milliseconds (UTC).

-- Ed25519 keys that sign access tokens. The private key's 32-byte seed is
-- sealed with auth.Box under associated data "holdfast/session/key/<kid>", so
-- a sealed seed copied into another row does not open. kid is derived from
-- the public key, which is therefore not stored: it is recomputed from the
-- opened seed and checked against kid. The one row with retired NULL signs;
-- retired rows still verify until verify_until.
CREATE TABLE IF NOT EXISTS session_keys (
	kid          TEXT PRIMARY KEY,
	sealed_seed  BLOB NOT NULL,
	created      INTEGER NOT NULL,
	retired      INTEGER,          -- NULL for the signing key
	verify_until INTEGER           -- retired + access TTL + leeway
);

-- One row per login: every refresh token and access token issued for that
-- login belongs to it, and revoking it ends them all.
CREATE TABLE IF NOT EXISTS session_families (
	id           TEXT PRIMARY KEY,   -- random; the "sid" claim of access tokens
	user_id      TEXT NOT NULL,
	methods      TEXT NOT NULL,      -- JSON array of authentication methods ("pwd", "otp", "oidc")
	created      INTEGER NOT NULL,   -- the login; the "auth_time" claim
	expires      INTEGER NOT NULL,   -- absolute end: created + absolute lifetime
	access_until INTEGER NOT NULL,   -- expiry of the newest access token issued
	revoked      INTEGER,            -- NULL while live
	reason       TEXT                -- why it was revoked: logout, reuse, user
);
CREATE INDEX IF NOT EXISTS session_families_user ON session_families (user_id);

-- Refresh tokens, by SHA-256 of their 32 random bytes; the tokens
-- themselves are never stored. spent is set when a token is exchanged;
-- presenting a spent token again revokes its family.
CREATE TABLE IF NOT EXISTS session_refresh (
	hash   BLOB PRIMARY KEY,
	family TEXT NOT NULL REFERENCES session_families (id) ON DELETE CASCADE,
	issued INTEGER NOT NULL,  -- idle expiry is issued + idle lifetime
	spent  INTEGER            -- NULL while unused
);
CREATE INDEX IF NOT EXISTS session_refresh_family ON session_refresh (family);

-- Failed logins per account and source, kept across restarts so that a
-- restart does not hand an attacker a fresh set of guesses. account is the
-- hex HMAC-SHA256 of the name as typed, under a key derived from the master
-- key: names are never stored, since people type passwords into the name
-- field. source is the client's address as a prefix (a.b.c.d/32, or the
-- /64 of an IPv6 address). failures counts attempts from that source since
-- its last success (an attempt counts as failed until it is reported
-- successful); rows idle for longer than the reset window are forgotten.
-- (The first version keyed this table by the name alone; Migrate renames
-- such a table session_lockouts_v1 and NewLimiter carries it over.)
CREATE TABLE IF NOT EXISTS session_lockouts (
	account      TEXT NOT NULL,
	source       TEXT NOT NULL,
	failures     INTEGER NOT NULL,
	last_attempt INTEGER NOT NULL,
	locked_until INTEGER NOT NULL,   -- 0 when not locked
	PRIMARY KEY (account, source)
);

-- Each account's budget of attempts from sources that have failed for it,
-- shared by all of them, as the time it will be full again (empty when
-- that is burst * interval ahead). Rows of full budgets are forgotten.
CREATE TABLE IF NOT EXISTS session_login_accounts (
	account TEXT PRIMARY KEY,        -- as in session_lockouts
	full_at INTEGER NOT NULL
);

-- The last TOTP time step accepted per user, so that a code once accepted
-- is refused for the rest of its window (RFC 6238 section 5.2), also after
-- a restart. Not secret: a step is the time divided by 30 s. Rows whose
-- step is out of every window are forgotten.
CREATE TABLE IF NOT EXISTS session_totp (
	user_id TEXT PRIMARY KEY,
	step    INTEGER NOT NULL
);

-- The nonces of signed API requests seen, until their timestamps leave
-- the window, so that a request replayed to another replica sharing the
-- database is refused too (Nonces). key is auth.NonceKey: 16 bytes of
-- the SHA-256 of key id and nonce. (A table only this code uses: a
-- release before it ignores it, so it needs no new schema version.)
CREATE TABLE IF NOT EXISTS session_nonces (
	key     BLOB PRIMARY KEY,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_nonces_expires ON session_nonces (expires);

-- Each source's budget of login attempts across accounts, shared by the
-- replicas on PostgreSQL (on SQLite, one process keeps it in memory), as
-- the time it will be full again. source is the address as a prefix, as
-- in session_lockouts. Rows of full budgets are forgotten. (A table only
-- this code uses: it needs no new schema version.)
CREATE TABLE IF NOT EXISTS session_login_sources (
	source  TEXT PRIMARY KEY,
	full_at INTEGER NOT NULL
);
