-- Every mail SES told us about (docs/design.md, "Duplicates counted from SES's events"): one row
-- per SES message id, the first time any event of that mail arrives, tied to exactly one order
-- (the primary key: a message id maps to at most one order). A second mail of one order is a
-- duplicate SES really accepted: `duplicate` says it was counted (DuplicateMailed), once, however
-- often SES or the queue redelivers its events. `claim_token` is the mail's tag: any event of a
-- mail of another claim is the witness a takeover looks for. Rows go with their order
-- (retention's horizon deletes it).
CREATE TABLE IF NOT EXISTS ses_mails (
    ses_message_id text PRIMARY KEY,
    order_id       text NOT NULL REFERENCES order_confirmations (order_id) ON DELETE CASCADE,
    claim_token    uuid,
    seen_at        timestamptz NOT NULL DEFAULT now(),
    duplicate      boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS ses_mails_order ON ses_mails (order_id);
-- `stats`' duplicates of the last 24 hours.
CREATE INDEX IF NOT EXISTS ses_mails_recent_duplicates ON ses_mails (seen_at) WHERE duplicate;
-- The Send events recorded before this table existed stay witnesses.
INSERT INTO ses_mails (ses_message_id, order_id, claim_token, seen_at)
SELECT send_event_message_id, order_id, send_event_claim_token, COALESCE(send_event_at, now())
FROM order_confirmations WHERE send_event_message_id IS NOT NULL
ON CONFLICT DO NOTHING;
