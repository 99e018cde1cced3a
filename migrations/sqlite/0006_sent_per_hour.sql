-- The statistics' hourly summary of sends (same meaning as the PostgreSQL migration). Times are
-- Unix milliseconds.
CREATE TABLE IF NOT EXISTS sent_per_hour (
    hour_start  INTEGER NOT NULL,
    priority    TEXT NOT NULL,
    ttc_ms      INTEGER NOT NULL,
    orders      INTEGER NOT NULL,
    PRIMARY KEY (hour_start, priority, ttc_ms)
);
CREATE TABLE IF NOT EXISTS sent_summary_progress (
    singleton         INTEGER PRIMARY KEY CHECK (singleton = 1),
    summarized_until  INTEGER NOT NULL
);
