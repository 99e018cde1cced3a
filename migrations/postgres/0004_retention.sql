-- Retention (docs/design.md, "Retention"): the scheduled reconcile removes the payload of orders
-- confirmed long ago and deletes finished rows past the horizon, a few bounded steps per run.
-- Safe to re-run (IF NOT EXISTS).
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS payload_removed_at timestamptz;

-- Confirmed orders whose payload is still kept, oldest first: the payload step reads only these.
CREATE INDEX IF NOT EXISTS order_confirmations_payload_kept ON order_confirmations (sent_at)
    WHERE status = 'sent' AND payload_removed_at IS NULL;

-- Finished rows by age: the horizon step reads only the oldest.
CREATE INDEX IF NOT EXISTS order_confirmations_finished_first_seen ON order_confirmations (first_seen_at)
    WHERE status IN ('sent', 'rejected', 'abandoned');
