-- Retention (same meaning as the PostgreSQL migration). Times are Unix milliseconds.
ALTER TABLE order_confirmations ADD COLUMN payload_removed_at INTEGER;
CREATE INDEX IF NOT EXISTS order_confirmations_payload_kept ON order_confirmations (sent_at)
    WHERE status = 'sent' AND payload_removed_at IS NULL;
CREATE INDEX IF NOT EXISTS order_confirmations_finished_first_seen ON order_confirmations (first_seen_at)
    WHERE status IN ('sent', 'rejected', 'abandoned');
