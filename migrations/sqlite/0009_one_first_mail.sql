-- The order's known mails (same meaning as the PostgreSQL migration): the recorded mail of an
-- order whose events brought other mails is known now too; one first mail per order, the
-- earliest seen, every other one an extra mail; the unique index keeps it so.
INSERT OR IGNORE INTO ses_mails (ses_message_id, order_id, claim_token, seen_at, duplicate)
SELECT oc.ses_message_id, oc.order_id, NULL, COALESCE(oc.sent_at, 0), 1
FROM order_confirmations oc
WHERE oc.ses_message_id IS NOT NULL AND EXISTS (SELECT 1 FROM ses_mails s WHERE s.order_id = oc.order_id);
UPDATE ses_mails SET duplicate = NOT duplicate
WHERE duplicate = (ses_message_id = (SELECT f.ses_message_id FROM ses_mails f WHERE f.order_id = ses_mails.order_id
                                     ORDER BY f.seen_at, f.ses_message_id LIMIT 1));
CREATE UNIQUE INDEX IF NOT EXISTS ses_mails_one_first ON ses_mails (order_id) WHERE NOT duplicate;
