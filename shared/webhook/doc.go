// Package webhook is the webhook adapter: it tells a receiver that a MOC
// was finalized by POSTing one JSON document to a URL, signed per Standard
// Webhooks (https://www.standardwebhooks.com, spec 1.0.0), and retried a
// few times when the receiver is down. [Verify] is the receiver's side.
//
// The request, the same on every attempt but for webhook-timestamp and
// webhook-signature:
//
//	POST {URL}
//	Content-Type: application/json
//	User-Agent: moc-upload-webhook/1.0
//	webhook-id: 6f1c…            the outbox row's id: one per event, the receiver's idempotency key
//	webhook-timestamp: 1764000000 Unix seconds of this attempt
//	webhook-signature: v1,K5oZ…=  only when a secret is set
//
//	{"event":"moc.finalized","mocId":"…","sessionId":"…","userId":"…","timestamp":"2026-11-25T10:00:00.123456Z"}
//
// The signature is base64(HMAC-SHA256(key, id + "." + timestamp + "." +
// body)) with key the base64-decoded part of the secret after "whsec_",
// prefixed with "v1,". Signing and verifying use the Standard Webhooks Go
// library (github.com/standard-webhooks/standard-webhooks/libraries/go);
// [Sign] reproduces the spec's published test vector.
//
// # Configuration
//
// A [Sender] needs URL, an absolute http or https URL
// (MOC_FINALIZE_WEBHOOK_URL), and optionally Secret, "whsec_" followed by
// the standard base64 of 24 to 64 random bytes
// (MOC_FINALIZE_WEBHOOK_SECRET; make one with
// `echo "whsec_$(openssl rand -base64 32)"`). Without a secret the request
// is sent unsigned. A malformed URL or secret is refused by [New] and by
// [Sender.Deliver] before anything is sent, with [ErrConfig]; the message
// never contains the secret.
//
// The package needs no IAM action; the function that runs it needs
// outbound network access to the receiver.
//
// # Considerations
//
// Delivery is at least once. [Sender.Deliver] makes at most Attempts
// attempts (default 4), waiting BaseDelay (default 1 s), then twice, then
// four times as long between them. It retries after a network error, an
// attempt that took longer than AttemptTimeout (default 10 s), a 5xx, a 408
// and a 429. On a 429 or 503 with a Retry-After header (seconds or an HTTP
// date) it waits that long instead when that is longer, at most
// MaxRetryAfter (default 30 s). Any other answer outside 2xx — another 4xx,
// or a 3xx, since redirects are not followed — is a refusal: not retried,
// [ErrRejected]. Every failed attempt is logged at WARN with the MOC id,
// the attempt and the status or error; giving up is logged once at ERROR
// and returned as [ErrExhausted] or [ErrRejected].
//
// Every attempt carries the same webhook-id and the same body bytes, and
// its own webhook-timestamp, signed anew: the spec defines the timestamp as
// the attempt's, and receivers refuse a timestamp more than 5 minutes
// away from their clock, so a fixed one would make a later redelivery (by
// the outbox sweeper) unverifiable. The event's own time is the body's
// "timestamp".
//
// Waits and attempts follow the context: cancelling it stops Deliver at
// once with the context's error, and when its deadline would pass during
// the next wait Deliver stops before waiting. Worst case with the defaults,
// Deliver takes 4×10 s of attempts plus 7 s of waits (more when Retry-After
// asks for it): give the function running it a timeout above that, or a
// context deadline, and keep the outbox row for a later run when Deliver
// returns a context error.
package webhook
