-- Tables of the upload service. Names of the tables and columns are those of
-- the service this one replaces, so its data and reports keep working; new
-- columns are marked "new".

-- +goose Up
CREATE TABLE upload_sessions (
    id                 uuid PRIMARY KEY,
    user_id            text NOT NULL,
    status             text NOT NULL
        CONSTRAINT upload_sessions_status_check
        CHECK (status IN ('active', 'finalizing', 'completed', 'cancelled')),
    part_size_bytes    bigint NOT NULL,
    expires_at         timestamptz NOT NULL,
    finalized_at       timestamptz,
    finalizing_at      timestamptz,
    moc_instruction_id uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX upload_sessions_user_created_idx ON upload_sessions (user_id, created_at);

CREATE TABLE upload_session_files (
    id         uuid PRIMARY KEY,
    session_id uuid NOT NULL
        CONSTRAINT upload_session_files_session_fkey
        REFERENCES upload_sessions (id) ON DELETE CASCADE,
    category   text NOT NULL,
    name       text NOT NULL,
    mime_type  text NOT NULL,
    extension  text NOT NULL,
    size       bigint NOT NULL CONSTRAINT upload_session_files_size_check CHECK (size > 0),
    s3_key     text NOT NULL CONSTRAINT upload_session_files_s3_key_key UNIQUE,
    upload_id  text,
    status     text NOT NULL
        CONSTRAINT upload_session_files_status_check
        CHECK (status IN ('pending', 'uploading', 'completed', 'failed')),
    file_url   text,
    metadata   jsonb NOT NULL DEFAULT '{}', -- new: declared checksums
    -- new: registration order, for files registered within one clock tick.
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT upload_session_files_session_name_key UNIQUE (session_id, name)
);

CREATE TABLE upload_session_parts (
    file_id     uuid NOT NULL
        CONSTRAINT upload_session_parts_file_fkey
        REFERENCES upload_session_files (id) ON DELETE CASCADE,
    part_number int NOT NULL
        CONSTRAINT upload_session_parts_part_number_check
        CHECK (part_number BETWEEN 1 AND 10000),
    etag        text NOT NULL,
    size        bigint NOT NULL,
    md5         text, -- new: hex MD5 of the part's bytes
    status      text NOT NULL DEFAULT 'uploaded',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT upload_session_parts_pkey PRIMARY KEY (file_id, part_number)
);

CREATE TABLE moc_instructions (
    id                uuid PRIMARY KEY,
    user_id           text NOT NULL,
    title             text NOT NULL,
    slug              text NOT NULL,
    description       text,
    type              text NOT NULL DEFAULT 'moc',
    status            text NOT NULL DEFAULT 'private',
    tags              jsonb NOT NULL DEFAULT '[]',
    theme             text,
    thumbnail_url     text,
    thumbnail_status  text NOT NULL DEFAULT 'none', -- new
    upload_session_id uuid -- new: the session the MOC was finalized from
        CONSTRAINT moc_instructions_upload_session_fkey
        REFERENCES upload_sessions (id) ON DELETE SET NULL,
    finalized_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT moc_instructions_user_title_key UNIQUE (user_id, title),
    CONSTRAINT moc_instructions_user_slug_key UNIQUE (user_id, slug),
    CONSTRAINT moc_instructions_upload_session_key UNIQUE (upload_session_id)
);

ALTER TABLE upload_sessions
    ADD CONSTRAINT upload_sessions_moc_instruction_fkey
    FOREIGN KEY (moc_instruction_id) REFERENCES moc_instructions (id) ON DELETE SET NULL;

CREATE TABLE moc_files (
    id                uuid PRIMARY KEY,
    moc_id            uuid NOT NULL
        CONSTRAINT moc_files_moc_fkey
        REFERENCES moc_instructions (id) ON DELETE CASCADE,
    file_type         text NOT NULL
        CONSTRAINT moc_files_file_type_check
        CHECK (file_type IN ('instruction', 'parts-list', 'gallery-image', 'thumbnail')),
    file_url          text NOT NULL,
    s3_key            text NOT NULL,
    original_filename text NOT NULL,
    mime_type         text NOT NULL,
    size              bigint NOT NULL,
    position          int NOT NULL DEFAULT 0, -- new: order of the files in the MOC
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT moc_files_moc_filename_key UNIQUE (moc_id, original_filename)
);

-- new: sessions each user created per UTC day, for the daily limit.
CREATE TABLE user_daily_uploads (
    user_id text NOT NULL,
    day     date NOT NULL,
    count   int NOT NULL DEFAULT 0,
    CONSTRAINT user_daily_uploads_pkey PRIMARY KEY (user_id, day)
);

-- new: WebSocket clients following a session's progress.
CREATE TABLE websocket_connections (
    connection_id text PRIMARY KEY,
    user_id       text NOT NULL,
    session_id    uuid,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX websocket_connections_session_idx ON websocket_connections (session_id);

-- +goose Down
DROP TABLE websocket_connections;
DROP TABLE user_daily_uploads;
ALTER TABLE upload_sessions DROP CONSTRAINT upload_sessions_moc_instruction_fkey;
DROP TABLE moc_files;
DROP TABLE moc_instructions;
DROP TABLE upload_session_parts;
DROP TABLE upload_session_files;
DROP TABLE upload_sessions;
