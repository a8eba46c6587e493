// Package upload is the domain of the MOC upload service: upload sessions,
// their files and parts, the per-category file rules, finalize (validation
// and MOC creation) and the errors clients see.
//
// It depends on nothing but the standard library and two ports, [Store]
// (PostgreSQL) and [Blob] (S3); the adapters live in shared/postgres and
// shared/s3blob, the HTTP handlers in shared/httpapi.
package upload
