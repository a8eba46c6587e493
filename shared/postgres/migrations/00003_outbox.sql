-- new: the outbox of the work that follows a finalize (package followup).
-- Finalize inserts one row per piece of work (the MOC's thumbnail, the
-- moc.finalized webhook) in the transaction that creates the MOC, then
-- invokes the row's function; the function marks the row done or failed.
-- The Sweeper invokes again the pending rows whose dispatch is older than
-- its timeout (or that were never dispatched), so a crash between the
-- commit and the invoke delays the work but never loses it.

-- +goose Up
CREATE TABLE outbox (
    id            uuid PRIMARY KEY, -- the job's id; the webhook's webhook-id
    moc_id        uuid NOT NULL
        CONSTRAINT outbox_moc_fkey
        REFERENCES moc_instructions (id) ON DELETE CASCADE,
    kind          text NOT NULL
        CONSTRAINT outbox_kind_check CHECK (kind IN ('thumbnail', 'webhook')),
    status        text NOT NULL DEFAULT 'pending'
        CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'done', 'failed')),
    -- invocations of the row's function (accepted or refused by Lambda)
    attempts      int NOT NULL DEFAULT 0,
    -- why the last attempt did not finish the work, or why it failed
    last_error    text,
    -- when the row was last handed to (or, on insert, is about to be handed
    -- to) its function; NULL: the last invoke failed, dispatch it again at
    -- once
    dispatched_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- one piece of each kind of work per MOC
    CONSTRAINT outbox_moc_kind_key UNIQUE (moc_id, kind)
);
-- What the Sweeper reads: pending rows by dispatch time.
CREATE INDEX outbox_status_dispatched_idx ON outbox (status, dispatched_at);

-- +goose Down
DROP TABLE outbox;
