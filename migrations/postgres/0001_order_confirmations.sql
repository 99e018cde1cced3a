-- The ledger: one row per order (DESIGN §3). Applied by `order-confirmation migrate` through the
-- Data API, each statement separately, inside one transaction.
CREATE TABLE order_confirmations (
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
CREATE INDEX order_confirmations_unsent ON order_confirmations (status, updated_at)
    WHERE status IN ('sending', 'failed');

-- "Sent in the last hour" and time-to-confirm percentiles scan recent sends only.
CREATE INDEX order_confirmations_sent_at ON order_confirmations (sent_at) WHERE status = 'sent';
