-- WebSocket clients following a session's progress (the WebSocket API's
-- $connect stores one row, $disconnect deletes it). 00001 created the table
-- without tying it to its session; a connection now belongs to exactly one
-- session and goes with it, and rows whose $disconnect never came are swept
-- by expiry.

-- +goose Up
-- Rows that cannot satisfy the new constraints follow no session anyone can
-- watch: drop them.
DELETE FROM websocket_connections c
WHERE c.session_id IS NULL
   OR NOT EXISTS (SELECT 1 FROM upload_sessions s WHERE s.id = c.session_id);

ALTER TABLE websocket_connections
    ALTER COLUMN session_id SET NOT NULL,
    ADD CONSTRAINT websocket_connections_session_fkey
        FOREIGN KEY (session_id) REFERENCES upload_sessions (id) ON DELETE CASCADE;

-- 00001 made websocket_connections_session_idx (session_id), which the
-- fan-out reads by; the sweep of expired rows reads by expiry.
CREATE INDEX websocket_connections_expires_idx ON websocket_connections (expires_at);

-- +goose Down
DROP INDEX websocket_connections_expires_idx;
ALTER TABLE websocket_connections
    DROP CONSTRAINT websocket_connections_session_fkey,
    ALTER COLUMN session_id DROP NOT NULL;
