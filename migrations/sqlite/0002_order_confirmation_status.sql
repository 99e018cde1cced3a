-- Read-only view for the order status page and support: one order's confirmation state, without
-- the payload (no customer address or name). `customer_status` is what the page may show.
CREATE VIEW IF NOT EXISTS order_confirmation_status AS
SELECT order_id, priority, status, attempts, last_error, ses_message_id, first_seen_at, updated_at, sent_at,
       CASE status
           WHEN 'sent' THEN 'confirmed'
           WHEN 'rejected' THEN 'needs_attention'
           WHEN 'abandoned' THEN 'needs_attention'
           ELSE 'processing'
       END AS customer_status
FROM order_confirmations;
