-- The order's known mails (docs/design.md, "Duplicates counted from SES's events"): from now on
-- the record step adds the recorded mail to `ses_mails` too, and of an order's mails exactly one
-- is its first (`duplicate` false) and every other one was counted once as an extra mail. The
-- unique index below decides which is first when two invocations add two mails of one order at
-- once: the second insert finds the first and becomes the extra mail, where before each saw the
-- other missing and neither counted.
-- The recorded mail of an order whose events brought other mails is known now too.
INSERT INTO ses_mails (ses_message_id, order_id, claim_token, seen_at, duplicate)
SELECT oc.ses_message_id, oc.order_id, NULL, COALESCE(oc.sent_at, now()), true
FROM order_confirmations oc
WHERE oc.ses_message_id IS NOT NULL AND EXISTS (SELECT 1 FROM ses_mails s WHERE s.order_id = oc.order_id)
ON CONFLICT DO NOTHING;
-- One first mail per order, the earliest seen; every other one an extra mail.
UPDATE ses_mails m SET duplicate = NOT m.duplicate
WHERE m.duplicate = (m.ses_message_id = (SELECT f.ses_message_id FROM ses_mails f WHERE f.order_id = m.order_id
                                         ORDER BY f.seen_at, f.ses_message_id LIMIT 1));
CREATE UNIQUE INDEX IF NOT EXISTS ses_mails_one_first ON ses_mails (order_id) WHERE NOT duplicate;
