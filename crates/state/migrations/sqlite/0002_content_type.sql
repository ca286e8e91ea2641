-- The media type a client gave with the data (application/json, ...);
-- empty for versions saved before it was kept, or without one.
ALTER TABLE strategy_state ADD COLUMN content_type TEXT NOT NULL DEFAULT '';
