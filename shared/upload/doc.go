// Package upload is the domain of the MOC upload service: upload sessions,
// their files and parts, the per-category file rules, finalize (validation
// and MOC creation) and the errors clients see.
//
// It depends on nothing but the standard library and its ports: [Store]
// (PostgreSQL) and [Blob] (S3), whose adapters live in shared/postgres and
// shared/s3blob; [Progress] (WebSocket events, shared/progress); and
// [FollowUps], which starts the work finalize leaves in the outbox (the
// thumbnail, the webhook; shared/followup). The HTTP handlers live in
// shared/httpapi.
package upload
