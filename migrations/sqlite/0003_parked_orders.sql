-- Parking: a person records that they took over an abandoned order (same meaning as the PostgreSQL
-- migration). Times are Unix milliseconds.
ALTER TABLE order_confirmations ADD COLUMN parked_at INTEGER;
ALTER TABLE order_confirmations ADD COLUMN parked_note TEXT;
