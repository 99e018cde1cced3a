-- Delivery events (same meaning as the PostgreSQL migration). Times are Unix milliseconds.
ALTER TABLE order_confirmations ADD COLUMN delivery_state TEXT
    CHECK (delivery_state IN ('delayed', 'delivered', 'soft_bounced', 'rendering_failed', 'rejected_by_ses',
                              'bounced', 'complained'));
ALTER TABLE order_confirmations ADD COLUMN delivery_detail TEXT;
ALTER TABLE order_confirmations ADD COLUMN delivery_at INTEGER;
ALTER TABLE order_confirmations ADD COLUMN send_event_message_id TEXT;
ALTER TABLE order_confirmations ADD COLUMN send_event_claim_token TEXT;
ALTER TABLE order_confirmations ADD COLUMN send_event_at INTEGER;
CREATE INDEX IF NOT EXISTS order_confirmations_ses_message_id ON order_confirmations (ses_message_id)
    WHERE ses_message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS order_confirmations_recent_delivery ON order_confirmations (sent_at, priority, delivery_state)
    WHERE status = 'sent';
DROP VIEW IF EXISTS order_confirmation_status;
CREATE VIEW order_confirmation_status AS
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
