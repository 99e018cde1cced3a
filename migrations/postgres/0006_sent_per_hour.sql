-- The statistics' hourly summary of sends (docs/design.md, "Statistics over 24 hours"): the
-- scheduled reconcile summarizes each finished hour once, so `stats` reads at most 24 summaries
-- per priority and only the sends of the hour at each end of its 24-hour window.
-- Safe to re-run (IF NOT EXISTS).

-- Orders sent in one hour, per priority and time to confirm (whole milliseconds truncated to three
-- significant digits).
CREATE TABLE IF NOT EXISTS sent_per_hour (
    hour_start  timestamptz NOT NULL,
    priority    text NOT NULL,
    ttc_ms      bigint NOT NULL,
    orders      bigint NOT NULL,
    PRIMARY KEY (hour_start, priority, ttc_ms)
);

-- One row: every send before `summarized_until` (within the last 24 hours) is in sent_per_hour.
CREATE TABLE IF NOT EXISTS sent_summary_progress (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    summarized_until  timestamptz NOT NULL
);
