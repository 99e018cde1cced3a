-- Parking (docs/design.md, Operations): a person records that they took over an abandoned order.
-- A parked order stays abandoned but leaves the UnconfirmedOrders count, so the alarm returns to OK
-- and fires again for the next order nobody has looked at. `retry` clears the mark.
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS parked_at timestamptz;
ALTER TABLE order_confirmations ADD COLUMN IF NOT EXISTS parked_note text;
