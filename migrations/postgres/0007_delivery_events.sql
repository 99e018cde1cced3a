-- Delivery events (docs/design.md, "Delivery events"): SES's own account of each mail, beside the
-- send state. `delivery_state` holds the strongest state seen (a state is replaced only by one of
-- higher rank); the Send event (SES's witness that it accepted the mail of a claim) is kept apart.
-- Safe to re-run (IF NOT EXISTS); the view is replaced with the same columns plus new ones.
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS delivery_state text
    CHECK (delivery_state IN ('delayed', 'delivered', 'soft_bounced', 'rendering_failed', 'rejected_by_ses',
                              'bounced', 'complained'));
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS delivery_detail text;
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS delivery_at timestamptz;
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS send_event_message_id text;
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS send_event_claim_token uuid;
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS send_event_at timestamptz;

-- Events of mail sent before the tags existed find their order by the SES message id.
CREATE INDEX IF NOT EXISTS order_confirmations_ses_message_id ON order_confirmations (ses_message_id)
    WHERE ses_message_id IS NOT NULL;

-- `stats`' delivery counts: the last 24 hours of sends, index-only.
CREATE INDEX IF NOT EXISTS order_confirmations_recent_delivery ON order_confirmations (sent_at)
    INCLUDE (priority, delivery_state) WHERE status = 'sent';

-- The status page: a sent order whose mail did not arrive needs a person (a hard bounce: ask the
-- customer for a correct address).
CREATE OR REPLACE VIEW order_confirmation_status AS
SELECT order_id, priority, status, attempts, last_error, ses_message_id, first_seen_at, updated_at, sent_at,
       CASE
           WHEN status = 'sent' AND delivery_state IN ('soft_bounced', 'rendering_failed', 'rejected_by_ses',
                                                      'bounced', 'complained') THEN 'needs_attention'
           WHEN status = 'sent' THEN 'confirmed'
           WHEN status IN ('rejected', 'abandoned') THEN 'needs_attention'
           ELSE 'processing'
       END AS customer_status,
       delivery_state, delivery_detail, delivery_at
FROM order_confirmations;
