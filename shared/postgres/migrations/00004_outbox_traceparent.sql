-- new: the trace context of the finalize that made each piece of work (its
-- W3C traceparent, OpenTelemetry), so that the Sweeper's re-dispatch of a
-- row, in a trace of its own, links to the finalize's trace (package
-- followup). NULL when the finalize was not traced.

-- +goose Up
ALTER TABLE outbox ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE outbox DROP COLUMN traceparent;
