// Package chaos is the service's fault suite: it runs the whole upload
// flow for several concurrent users against the local stack (the same
// Lambda handlers behind the local API Gateway) while toxiproxy, embedded
// as a Go library, sits between the stack and its PostgreSQL and S3 and
// injects latency, connection resets, a frozen peer and a restart of
// each. Afterwards, with every fault undone, it reads S3 and the database
// directly and checks that every acknowledged part and MOC is there
// byte for byte, that no request outlasted its bound, that nothing but a
// retryable 503 was a 5xx, and that the database holds no orphan rows.
//
// `make test` runs the short form (a few users, short windows, seconds);
// `make chaos` the long one (go test -chaos.long), whose figures are in
// docs/reliability.md.
package chaos
