-- The ledger on SQLite (embedded default for local runs). Same columns and meaning as the
-- PostgreSQL schema; times are Unix milliseconds because SQLite has no timestamp type.
CREATE TABLE IF NOT EXISTS order_confirmations (
    order_id        TEXT PRIMARY KEY,
    payload_sha256  TEXT NOT NULL,
    priority        TEXT NOT NULL CHECK (priority IN ('high', 'normal')),
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'rejected', 'abandoned')),
    claim_token     TEXT,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    ses_message_id  TEXT,
    last_error      TEXT,
    first_seen_at   INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX IF NOT EXISTS order_confirmations_unsent ON order_confirmations (status, updated_at) WHERE status IN ('sending', 'failed');
CREATE INDEX IF NOT EXISTS order_confirmations_sent_at ON order_confirmations (sent_at) WHERE status = 'sent';
