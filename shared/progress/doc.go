// Package progress is the WebSocket adapter of [upload.Progress]: it tells
// the clients following a session (connected to the API Gateway WebSocket
// API, see shared/wsapi) what the server recorded, by posting one JSON
// message per event to each of the session's connections with the
// management API's PostToConnection (aws-sdk-go-v2 apigatewaymanagementapi).
//
// The events, one WebSocket message each:
//
//	{"type":"upload.part.completed","sessionId":"…","fileId":"…","partNumber":1,"etag":"…","totalParts":10,"completedParts":1,"percentComplete":10}
//	{"type":"upload.session.finalized","sessionId":"…","mocId":"…","status":"success"}
//
// percentComplete is completedParts*100/totalParts rounded down, so it is
// 100 only once every part is there.
//
// # Configuration
//
// WEBSOCKET_ENDPOINT is the WebSocket API's callback URL,
// https://{api-id}.execute-api.{region}.amazonaws.com/{stage} in AWS (the
// wss:// URL clients connect to, with https:// instead of wss://), or the
// local gateway's management endpoint, e.g. http://127.0.0.1:3001. [Open]
// builds the client with [NewClient]: the endpoint as BaseEndpoint, signed
// for the region named in an execute-api host name (else the configured
// one), with the static credentials when they are given (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, which Lambda sets from the
// function's role), with no signature for a host outside amazonaws.com
// when they are not, and from the default credential chain otherwise.
//
// Without an endpoint, [Open] returns [Disabled]: every request's events
// are dropped with one warning in the log, and the upload goes on.
//
// The functions that record parts or finalize need the IAM action
// execute-api:ManageConnections on
// arn:aws:execute-api:{region}:{account}:{api-id}/{stage}/POST/@connections/*.
//
// # Considerations
//
// Events are best effort and never fail an upload, nor hold it up for
// long. A request makes one call, [Notifier.Announce], with all its events
// (a batch's parts once they are all stored, a finalize's learnt parts and
// then its finalized event). The call reads the session's connections
// once, posts to them concurrently (at most [Notifier.Concurrency] at
// once; the call's events go to each connection in order, one after the
// other) and gives up when [Notifier.Timeout] (2 s by default) has passed,
// or half the time left before the request's own deadline when that is
// sooner. The request waits for it (at most that long) before it answers,
// so that a Lambda is not frozen with posts half sent. The call is
// detached from the request's cancellation: the change it reports has
// committed. A call, so a request, logs at most one warning, naming how
// many posts failed and the first error; nothing is retried later.
//
// A connection the management API answers 410 Gone for is deleted, unless
// it was saved less than [Notifier.GoneGrace] ago: API Gateway answers 410
// for a connection whose $connect has not returned yet, and that one is
// about to open. A 410 is not counted as a failure.
package progress
