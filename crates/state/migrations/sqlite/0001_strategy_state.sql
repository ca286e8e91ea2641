-- One row per saved version; the newest version of a strategy is its state.
CREATE TABLE IF NOT EXISTS strategy_state (
    strategy_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    saved_at_ms INTEGER NOT NULL,
    PRIMARY KEY (strategy_id, version)
);
