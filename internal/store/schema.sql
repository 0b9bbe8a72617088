-- Holdfast's state: everything that must survive a crash. One file per
-- cloud; every change is a transaction. Read this file to see the whole
-- data model.

-- What was handed out: an instance keeps its VMID, node and addresses
-- until an engine has destroyed it.
CREATE TABLE IF NOT EXISTS allocations (
	instance TEXT PRIMARY KEY,
	vmid     INTEGER NOT NULL UNIQUE,
	site     TEXT NOT NULL,
	node     TEXT NOT NULL,
	addrs    TEXT NOT NULL -- JSON: zone -> address
);

-- What Holdfast has made, with the attributes it made it with. seq orders
-- resources by creation so that deleting backwards removes dependents first.
CREATE TABLE IF NOT EXISTS resources (
	id    TEXT PRIMARY KEY,
	kind  TEXT NOT NULL,
	site  TEXT NOT NULL,
	deps  TEXT NOT NULL, -- JSON list of resource ids
	attrs TEXT NOT NULL, -- JSON object
	seq   INTEGER NOT NULL
);

-- The intent log: a row is written before a step starts and completed
-- after it ends, in the same transaction as the step's effect on the
-- tables above. A row left without an outcome is a step a crash cut short;
-- the next run observes the engine to resolve it.
CREATE TABLE IF NOT EXISTS intents (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	run      INTEGER NOT NULL,
	resource TEXT NOT NULL,
	action   TEXT NOT NULL,
	started  TEXT NOT NULL,
	finished TEXT,
	outcome  TEXT, -- done | failed | abandoned
	error    TEXT
);
CREATE INDEX IF NOT EXISTS intents_open ON intents (finished) WHERE finished IS NULL;

CREATE TABLE IF NOT EXISTS runs (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	started  TEXT NOT NULL,
	finished TEXT,
	outcome  TEXT
);
