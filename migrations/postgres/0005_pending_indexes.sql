-- Statistics and reconcile cost what the pending work costs, not the history (docs/design.md,
-- "Retention"): partial indexes matching their WHERE clauses. Safe to re-run (IF NOT EXISTS).

-- `stats` counts per priority and status of everything not sent.
CREATE INDEX IF NOT EXISTS order_confirmations_unfinished ON order_confirmations (priority, status)
    WHERE status IN ('sending', 'failed', 'rejected', 'abandoned');

-- The UnconfirmedOrders count and its oldest age (reconcile, every run).
CREATE INDEX IF NOT EXISTS order_confirmations_unconfirmed ON order_confirmations (first_seen_at)
    WHERE status IN ('sending', 'failed', 'abandoned') AND parked_at IS NULL;
