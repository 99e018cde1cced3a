-- Partial indexes matching the statistics and reconcile queries (same as the PostgreSQL migration).
CREATE INDEX IF NOT EXISTS order_confirmations_unfinished ON order_confirmations (priority, status)
    WHERE status IN ('sending', 'failed', 'rejected', 'abandoned');
CREATE INDEX IF NOT EXISTS order_confirmations_unconfirmed ON order_confirmations (first_seen_at)
    WHERE status IN ('sending', 'failed', 'abandoned') AND parked_at IS NULL;
CREATE INDEX IF NOT EXISTS order_confirmations_recent_sent ON order_confirmations (sent_at, priority, first_seen_at)
    WHERE status = 'sent';
-- It replaces the narrower index of 0001.
DROP INDEX IF EXISTS order_confirmations_sent_at;
