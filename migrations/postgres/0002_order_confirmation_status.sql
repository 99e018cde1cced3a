-- Read-only view for the order status page and support: one order's confirmation state, without
-- the payload (no customer address or name). `customer_status` is what the page may show:
-- 'confirmed', 'processing' (being sent or retried) or 'needs_attention' (refused by SES, or
-- reconciliation gave up: a person must act). Grant the status page SELECT on this view only.
CREATE OR REPLACE VIEW order_confirmation_status AS
SELECT order_id, priority, status, attempts, last_error, ses_message_id, first_seen_at, updated_at, sent_at,
       CASE status
           WHEN 'sent' THEN 'confirmed'
           WHEN 'rejected' THEN 'needs_attention'
           WHEN 'abandoned' THEN 'needs_attention'
           ELSE 'processing'
       END AS customer_status
FROM order_confirmations;
