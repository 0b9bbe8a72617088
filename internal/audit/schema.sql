-- The audit log: append-only, hash-chained, with signed checkpoints.
-- Read this file to see the whole data model of package audit.

-- One row per audited event. hash = SHA-256 of the canonical encoding of
-- (seq, time, actor, tenant, action, object, source, result, detail, prev);
-- prev is the hash of entry seq-1 (32 zero bytes for entry 1). Rows are
-- never updated or deleted by Holdfast.
CREATE TABLE IF NOT EXISTS audit_entries (
	seq    INTEGER PRIMARY KEY, -- 1, 2, 3, ... without gaps
	time   TEXT NOT NULL,       -- UTC, microseconds, RFC 3339 (exactly the text that was hashed)
	actor  TEXT NOT NULL,
	tenant TEXT NOT NULL,       -- '' for operator-level events
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	source TEXT NOT NULL,       -- remote address
	result TEXT NOT NULL,
	detail TEXT NOT NULL,       -- JSON object of strings, '' when none
	prev   BLOB NOT NULL,       -- 32 bytes
	hash   BLOB NOT NULL        -- 32 bytes
);
CREATE INDEX IF NOT EXISTS audit_entries_tenant ON audit_entries (tenant, seq);

-- Ed25519-signed statements "entry seq had this hash at this time".
-- sig signs the canonical encoding of (seq, hash, time). Each is also
-- published outside the database as it is made (a line of
-- audit-checkpoints.jsonl, see publish.go): these rows are only the log's
-- own copy, which an attacker with write access can delete.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	seq  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL,
	time TEXT NOT NULL,
	sig  BLOB NOT NULL
);

-- How much of the published checkpoints file each witness has answered 2xx
-- for, so that a witness that was down, or a restart, resumes where it
-- stopped rather than losing or resending everything. The file is
-- append-only: a byte count is a position in it.
CREATE TABLE IF NOT EXISTS audit_witness (
	url  TEXT PRIMARY KEY, -- the witness, without a password
	sent INTEGER NOT NULL  -- bytes of the file the witness has kept
);
