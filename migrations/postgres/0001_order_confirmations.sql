-- The ledger: one row per order (docs/design.md, The ledger). Applied by `migrate` through the
-- Data API, each statement separately, inside one transaction. Safe to re-run (IF NOT EXISTS): a
-- schema applied by hand before migrations were tracked is adopted, not an error.
CREATE TABLE IF NOT EXISTS order_confirmations (
    order_id        text PRIMARY KEY,
    payload_sha256  text NOT NULL,
    priority        text NOT NULL CHECK (priority IN ('high', 'normal')),
    payload         jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'rejected', 'abandoned')),
    claim_token     uuid,
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    ses_message_id  text,
    last_error      text,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

-- Reconciliation and the pending statistics scan only unsent rows.
CREATE INDEX IF NOT EXISTS order_confirmations_unsent ON order_confirmations (status, updated_at)
    WHERE status IN ('sending', 'failed');

-- "Sent in the last hour" and time-to-confirm percentiles scan recent sends only.
CREATE INDEX IF NOT EXISTS order_confirmations_sent_at ON order_confirmations (sent_at) WHERE status = 'sent';
