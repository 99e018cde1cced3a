-- Statistics and reconcile cost what the pending work costs, not the history (docs/design.md,
-- "Retention"): partial indexes matching their WHERE clauses. Safe to re-run (IF NOT EXISTS).

-- `stats` counts per priority and status of everything not sent.
CREATE INDEX IF NOT EXISTS order_confirmations_unfinished ON order_confirmations (priority, status)
    WHERE status IN ('sending', 'failed', 'rejected', 'abandoned');

-- The UnconfirmedOrders count and its oldest age (reconcile, every run).
CREATE INDEX IF NOT EXISTS order_confirmations_unconfirmed ON order_confirmations (first_seen_at)
    WHERE status IN ('sending', 'failed', 'abandoned') AND parked_at IS NULL;

-- Sent in the last hour and 24 hours, and the time-to-confirm percentiles: an index-only scan of
-- the recent range of `sent_at`, the older history never read.
CREATE INDEX IF NOT EXISTS order_confirmations_recent_sent ON order_confirmations (sent_at)
    INCLUDE (priority, first_seen_at) WHERE status = 'sent';
-- It replaces the narrower index of 0001.
DROP INDEX IF EXISTS order_confirmations_sent_at;
