-- Sample rows for `make seed`, the sample events in events/ and the README.
-- Loading it again resets exactly these rows and nothing else.
--
-- Where they come from: the old service's seed story (STORY-017, "Seed
-- Requirements") seeds an expired session, another user's session and an
-- existing MOC for the title-conflict case; the sample events add an active
-- session with one image file. The story's ids are not valid UUIDs
-- ('eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee' has no RFC 4122 version or
-- variant), so each keeps its look but gets version 4 and variant 8:
--   eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee → eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee
--   dddddddd-dddd-dddd-dddd-dddddddddddd → dddddddd-dddd-4ddd-8ddd-dddddddddddd
--   ffffffff-ffff-ffff-ffff-ffffffffffff → ffffffff-ffff-4fff-8fff-ffffffffffff
-- The sample session, its image and its PDF are 5eed0000-0000-4000-8000-00000000000{1,2,3}.
-- The story's own rows (STORY-01727: "a session with a completed image file for thumbnail
-- testing") are the thumbnail session 5eed…0004, finalized into the MOC 5eed…00a1: its image
-- 5eed…0005 (a real 640x480 PNG) and its PDF 5eed…0006 are completed and in S3, so a thumbnail
-- job for that MOC has an image to make one of, and GetMoc has a MOC with files to read.
-- Two more sessions exist for one sample event each, so that every event in events/ succeeds
-- after `make seed` in any order: 5eed…0007 (empty, RegisterFile adds its file) and 5eed…00b1
-- (empty, AbortSession abandons it).
-- User ids are opaque strings and stay the story's.

DELETE FROM moc_instructions
 WHERE id IN ('ffffffff-ffff-4fff-8fff-ffffffffffff', '5eed0000-0000-4000-8000-0000000000a1')
    OR upload_session_id IN ('5eed0000-0000-4000-8000-000000000001',
                             '5eed0000-0000-4000-8000-000000000004',
                             '5eed0000-0000-4000-8000-000000000007',
                             '5eed0000-0000-4000-8000-0000000000b1',
                             'eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee',
                             'dddddddd-dddd-4ddd-8ddd-dddddddddddd');
DELETE FROM upload_sessions
 WHERE id IN ('5eed0000-0000-4000-8000-000000000001',
              '5eed0000-0000-4000-8000-000000000004',
              '5eed0000-0000-4000-8000-000000000007',
              '5eed0000-0000-4000-8000-0000000000b1',
              'eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee',
              'dddddddd-dddd-4ddd-8ddd-dddddddddddd');

INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at, created_at, updated_at) VALUES
  -- The sample session: active for a day after seeding (`make seed` renews it).
  ('5eed0000-0000-4000-8000-000000000001', 'dev-user-00000000-0000-0000-0000-000000000001',
   'active', 5242880, now() + interval '1 day', now(), now()),
  -- The story's expired session (writes → 410 SESSION_EXPIRED).
  ('eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee', 'dev-user-00000000-0000-0000-0000-000000000001',
   'active', 5242880, now() - interval '1 hour', now() - interval '2 hours', now() - interval '2 hours'),
  -- The story's session of another user (→ 404 for the dev user).
  ('dddddddd-dddd-4ddd-8ddd-dddddddddddd', 'other-user-99999999-9999-9999-9999-999999999999',
   'active', 5242880, now() + interval '15 minutes', now(), now()),
  -- The thumbnail session: finalized into the MOC 5eed…00a1 below (linked after it exists).
  ('5eed0000-0000-4000-8000-000000000004', 'dev-user-00000000-0000-0000-0000-000000000001',
   'completed', 5242880, now() + interval '1 day', now(), now()),
  -- RegisterFile's session (events/RegisterFile.json): active and empty.
  ('5eed0000-0000-4000-8000-000000000007', 'dev-user-00000000-0000-0000-0000-000000000001',
   'active', 5242880, now() + interval '1 day', now(), now()),
  -- AbortSession's session (events/AbortSession.json): active and empty.
  ('5eed0000-0000-4000-8000-0000000000b1', 'dev-user-00000000-0000-0000-0000-000000000001',
   'active', 5242880, now() + interval '1 day', now(), now());

-- The sample image: a 67-byte PNG, one part. upload_id is filled in by
-- `make seed`, which opens the file's multipart upload in S3.
INSERT INTO upload_session_files
  (id, session_id, category, name, mime_type, extension, size, s3_key, upload_id, status, metadata, created_at, updated_at)
VALUES ('5eed0000-0000-4000-8000-000000000002', '5eed0000-0000-4000-8000-000000000001',
        'image', 'seed-image.png', 'image/png', 'png', 67,
        'dev/moc-instructions/dev-user-00000000-0000-0000-0000-000000000001/5eed0000-0000-4000-8000-000000000001/image/5eed0000-0000-4000-8000-000000000002.png',
        NULL, 'pending', '{}', now(), now());

-- The sample instructions: seed-instructions.pdf beside this file, 218
-- bytes. `make seed` uploads it and marks it completed, so the sample
-- Finalize event can succeed.
INSERT INTO upload_session_files
  (id, session_id, category, name, mime_type, extension, size, s3_key, upload_id, status, metadata, created_at, updated_at)
VALUES ('5eed0000-0000-4000-8000-000000000003', '5eed0000-0000-4000-8000-000000000001',
        'instruction', 'seed-instructions.pdf', 'application/pdf', 'pdf', 218,
        'dev/moc-instructions/dev-user-00000000-0000-0000-0000-000000000001/5eed0000-0000-4000-8000-000000000001/instruction/5eed0000-0000-4000-8000-000000000003.pdf',
        NULL, 'pending', '{}', now(), now());

-- The story's existing MOC (finalizing a session with this title → 409 CONFLICT).
INSERT INTO moc_instructions (id, user_id, title, slug, type, status, created_at, updated_at)
VALUES ('ffffffff-ffff-4fff-8fff-ffffffffffff', 'dev-user-00000000-0000-0000-0000-000000000001',
        'Existing MOC Title', 'existing-moc-title', 'moc', 'published', now(), now());

-- The thumbnail session's files. Sizes and file URLs are filled in by `make seed`, which
-- uploads the bytes (a 640x480 PNG it draws, seed-instructions.pdf) and completes both.
INSERT INTO upload_session_files
  (id, session_id, category, name, mime_type, extension, size, s3_key, upload_id, status, metadata, created_at, updated_at)
VALUES ('5eed0000-0000-4000-8000-000000000005', '5eed0000-0000-4000-8000-000000000004',
        'image', 'seed-castle-front.png', 'image/png', 'png', 1,
        'dev/moc-instructions/dev-user-00000000-0000-0000-0000-000000000001/5eed0000-0000-4000-8000-000000000004/image/5eed0000-0000-4000-8000-000000000005.png',
        NULL, 'pending', '{}', now(), now()),
       ('5eed0000-0000-4000-8000-000000000006', '5eed0000-0000-4000-8000-000000000004',
        'instruction', 'seed-castle-instructions.pdf', 'application/pdf', 'pdf', 218,
        'dev/moc-instructions/dev-user-00000000-0000-0000-0000-000000000001/5eed0000-0000-4000-8000-000000000004/instruction/5eed0000-0000-4000-8000-000000000006.pdf',
        NULL, 'pending', '{}', now(), now());

-- The MOC of the thumbnail session (events/GetMoc.json reads it). Its moc_files rows are made
-- by `make seed` from the session's files once they are uploaded, as finalize makes them.
INSERT INTO moc_instructions (id, user_id, title, slug, description, type, status, tags, theme,
                              thumbnail_status, upload_session_id, finalized_at, created_at, updated_at)
VALUES ('5eed0000-0000-4000-8000-0000000000a1', 'dev-user-00000000-0000-0000-0000-000000000001',
        'Seed Castle Gallery', 'seed-castle-gallery',
        'The seed story''s MOC: a finalized session with a completed image, for thumbnail testing.',
        'moc', 'private', '["castle"]', 'Castle', 'none', '5eed0000-0000-4000-8000-000000000004',
        now(), now(), now());
UPDATE upload_sessions
   SET moc_instruction_id = '5eed0000-0000-4000-8000-0000000000a1', finalized_at = now()
 WHERE id = '5eed0000-0000-4000-8000-000000000004';
