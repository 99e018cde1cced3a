-- Every mail SES told us about (same meaning as the PostgreSQL migration). Times are Unix
-- milliseconds; a trigger stands in for the foreign key's cascade (SQLite enforces foreign keys
-- only when a connection asks for it).
CREATE TABLE IF NOT EXISTS ses_mails (
    ses_message_id TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL,
    claim_token    TEXT,
    seen_at        INTEGER NOT NULL,
    duplicate      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ses_mails_order ON ses_mails (order_id);
CREATE INDEX IF NOT EXISTS ses_mails_recent_duplicates ON ses_mails (seen_at) WHERE duplicate;
CREATE TRIGGER IF NOT EXISTS ses_mails_follow_their_order AFTER DELETE ON order_confirmations
BEGIN
    DELETE FROM ses_mails WHERE order_id = OLD.order_id;
END;
INSERT OR IGNORE INTO ses_mails (ses_message_id, order_id, claim_token, seen_at)
SELECT send_event_message_id, order_id, send_event_claim_token, COALESCE(send_event_at, 0)
FROM order_confirmations WHERE send_event_message_id IS NOT NULL;
