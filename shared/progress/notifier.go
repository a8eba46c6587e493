package progress

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Defaults of a Notifier's fields.
const (
	DefaultTimeout     = 2 * time.Second
	DefaultConcurrency = 16
	// DefaultGoneGrace is API Gateway's longest $connect integration (29 s)
	// and a margin: a younger connection that answers 410 is still opening.
	DefaultGoneGrace = 30 * time.Second
)

// Poster is the part of *apigatewaymanagementapi.Client a Notifier calls.
// Wrap a client in a type with this method to inject faults in tests.
type Poster interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
}

// Connections is what a Notifier needs of the connections store
// (*postgres.Store).
type Connections interface {
	// SessionConnections returns the ids of the live connections following
	// sessionID.
	SessionConnections(ctx context.Context, sessionID string) ([]string, error)
	// DeleteGoneConnection deletes a connection that answered 410 Gone,
	// unless it was saved less than minAge ago.
	DeleteGoneConnection(ctx context.Context, connectionID string, minAge time.Duration) error
}

var (
	_ Poster          = (*apigatewaymanagementapi.Client)(nil)
	_ upload.Progress = (*Notifier)(nil)
	_ upload.Progress = Disabled{}
)

// Notifier is the upload.Progress that posts events to the WebSocket
// connections following a session. Build it once per process with New and
// share it; change its fields before first use only.
type Notifier struct {
	conns  Connections
	poster Poster

	// Timeout bounds one call, listing the connections included (default
	// DefaultTimeout). A call whose context has a sooner deadline takes
	// half the time left before it.
	Timeout time.Duration
	// Concurrency bounds the connections posted to at once (default
	// DefaultConcurrency).
	Concurrency int
	// GoneGrace is how old a connection must be to be deleted when it
	// answers 410 Gone (default DefaultGoneGrace).
	GoneGrace time.Duration
	// Logger receives the warnings (default slog.Default()).
	Logger *slog.Logger
}

// New returns a Notifier that finds a session's connections in conns and
// posts to them with poster (an *apigatewaymanagementapi.Client, see
// NewClient).
func New(conns Connections, poster Poster) *Notifier {
	return &Notifier{conns: conns, poster: poster, Timeout: DefaultTimeout,
		Concurrency: DefaultConcurrency, GoneGrace: DefaultGoneGrace}
}

// message is one event for one session, encoded.
type message struct {
	sessionID string
	data      []byte
}

// Announce sends one request's events to every connection of their
// session: an upload.part.completed message per part, in the order of
// ev.Parts, then the upload.session.finalized message of ev.Finalized.
// It is one call: one listing of the connections per session, one time
// budget, at most one warning.
func (n *Notifier) Announce(ctx context.Context, ev upload.Events) {
	msgs := make([]message, 0, len(ev.Parts)+1)
	for _, p := range ev.Parts {
		msgs = append(msgs, message{p.SessionID, mustJSON(NewPartCompletedEvent(p))})
	}
	if f := ev.Finalized; f != nil {
		msgs = append(msgs, message{f.SessionID, mustJSON(NewSessionFinalizedEvent(*f))})
	}
	n.send(ctx, eventAttr(ev), msgs)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and ints
	}
	return b
}

// target is one connection and the messages it is sent, in order.
type target struct {
	connectionID string
	sessionID    string
	data         [][]byte
}

// report is what one call did, for its one log line.
type report struct {
	mu          sync.Mutex
	sessions    []string
	connections int
	posts       int // messages to send: one per connection and event
	sent        int
	failed      int // not delivered: errors, and posts the deadline cut off
	firstErr    error
	gone        int
	listFailed  int
	listErr     error
	deleteErr   error
}

func (r *report) postFailed(n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed += n
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// send delivers msgs, events of the kinds kind names (see eventAttr): for
// each session (in order of first appearance) it lists the connections
// once, then posts each connection its messages in order, connections
// concurrently, all within the call's budget. The call is the span
// progress.send, under ctx's (see report.endSpan).
func (n *Notifier) send(ctx context.Context, kind attribute.KeyValue, msgs []message) {
	if len(msgs) == 0 {
		return
	}
	ctx, span := otel.Tracer(tracerName).Start(ctx, spanSend, trace.WithAttributes(kind))
	bctx, cancel := n.budget(ctx)
	defer cancel()

	var order []string
	bySession := map[string][][]byte{}
	for _, m := range msgs {
		if _, ok := bySession[m.sessionID]; !ok {
			order = append(order, m.sessionID)
		}
		bySession[m.sessionID] = append(bySession[m.sessionID], m.data)
	}
	rep := &report{sessions: order}
	var targets []target
	for _, sid := range order {
		ids, err := n.conns.SessionConnections(bctx, sid)
		if err != nil {
			rep.listFailed++
			if rep.listErr == nil {
				rep.listErr = err
			}
			continue
		}
		for _, id := range ids {
			targets = append(targets, target{id, sid, bySession[sid]})
			rep.posts += len(bySession[sid])
		}
	}
	rep.connections = len(targets)

	workers := min(n.concurrency(), len(targets))
	next := make(chan target)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for t := range next {
				n.deliver(bctx, t, rep)
			}
		})
	}
	for _, t := range targets {
		next <- t
	}
	close(next)
	wg.Wait()
	n.log(ctx, kind, rep)
	rep.endSpan(span)
}

// The span of one call: its PostToConnection calls (the management API
// client's spans, otelaws) are its children. Only the span's attributes
// tell of the trace: the events' JSON is the contract's.
const (
	tracerName = "github.com/mocbuilders/moc-upload/shared/progress"
	spanSend   = "progress.send"
)

// The span's attributes: the event type (event, or events when a call has
// parts and the finalized event), the session (sessionId, or sessionIds
// when a call has parts of several), the connections posted to, the
// messages sent, the connections gone (410), the messages not delivered.
const (
	attrEvent       = attribute.Key("event")
	attrEvents      = attribute.Key("events")
	attrSessionID   = attribute.Key("sessionId")
	attrSessionIDs  = attribute.Key("sessionIds")
	attrConnections = attribute.Key("connections")
	attrSent        = attribute.Key("sent")
	attrGone        = attribute.Key("gone")
	attrFailed      = attribute.Key("failed")
)

// eventAttr names the kinds of events in ev, in order: event when it has
// one, events when it has both. The span and the warnings carry it.
func eventAttr(ev upload.Events) attribute.KeyValue {
	var kinds []string
	if len(ev.Parts) > 0 {
		kinds = append(kinds, TypePartCompleted)
	}
	if ev.Finalized != nil {
		kinds = append(kinds, TypeSessionFinalized)
	}
	if len(kinds) == 1 {
		return attrEvent.String(kinds[0])
	}
	return attrEvents.StringSlice(kinds)
}

// endSpan ends the call's span with what it did. Messages not delivered, or
// sessions whose connections could not be listed, make its status Error
// (the first error recorded); gone connections do not: clients leave.
func (r *report) endSpan(span trace.Span) {
	defer span.End()
	session := attrSessionID.String(r.sessions[0])
	if len(r.sessions) > 1 {
		session = attrSessionIDs.StringSlice(r.sessions)
	}
	span.SetAttributes(session, attrConnections.Int(r.connections), attrSent.Int(r.sent),
		attrGone.Int(r.gone), attrFailed.Int(r.failed))
	for _, err := range []error{r.firstErr, r.listErr, r.deleteErr} {
		if err != nil {
			span.RecordError(err)
		}
	}
	switch {
	case r.listErr != nil:
		span.SetStatus(codes.Error, "connections not listed")
	case r.failed > 0:
		span.SetStatus(codes.Error, "messages not delivered")
	}
}

// deliver posts t's messages in order. A 410 Gone stops it and deletes
// the connection; another error is counted and the next message tried,
// until the budget runs out.
func (n *Notifier) deliver(ctx context.Context, t target, rep *report) {
	sent := 0
	for i, data := range t.data {
		if err := ctx.Err(); err != nil {
			rep.postFailed(len(t.data)-i, err)
			break
		}
		_, err := n.poster.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: &t.connectionID,
			Data:         data,
		})
		if isGone(err) {
			n.forget(ctx, t.connectionID, rep)
			break
		}
		if err != nil {
			rep.postFailed(1, err)
			continue
		}
		sent++
	}
	rep.mu.Lock()
	rep.sent += sent
	rep.mu.Unlock()
}

// forget deletes a connection that answered 410 Gone.
func (n *Notifier) forget(ctx context.Context, connectionID string, rep *report) {
	err := n.conns.DeleteGoneConnection(ctx, connectionID, n.goneGrace())
	rep.mu.Lock()
	defer rep.mu.Unlock()
	rep.gone++
	if err != nil && rep.deleteErr == nil {
		rep.deleteErr = err
	}
}

// isGone reports whether err is the management API's 410: the client has
// disconnected (or its $connect has not returned yet).
func isGone(err error) bool {
	if err == nil {
		return false
	}
	var gone *types.GoneException
	if errors.As(err, &gone) {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusGone
}

// budget is the call's context: detached from ctx's cancellation (the
// change has committed; a client that went away does not take the event
// from the others) but never past ctx's deadline, and bounded by Timeout
// or half the time ctx has left, whichever is sooner.
func (n *Notifier) budget(ctx context.Context) (context.Context, context.CancelFunc) {
	d := n.Timeout
	if d <= 0 {
		d = DefaultTimeout
	}
	if deadline, ok := ctx.Deadline(); ok {
		if half := time.Until(deadline) / 2; half < d {
			d = half
		}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

func (n *Notifier) concurrency() int {
	if n.Concurrency > 0 {
		return n.Concurrency
	}
	return DefaultConcurrency
}

func (n *Notifier) goneGrace() time.Duration {
	if n.GoneGrace > 0 {
		return n.GoneGrace
	}
	return DefaultGoneGrace
}

func (n *Notifier) logger() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.Default()
}

// log writes the call's one warning, when something was not delivered or
// not cleaned up; a call that delivered everything logs nothing.
func (n *Notifier) log(ctx context.Context, kind attribute.KeyValue, rep *report) {
	if rep.failed == 0 && rep.listErr == nil && rep.deleteErr == nil {
		return
	}
	attrs := []any{
		string(kind.Key), kind.Value.AsInterface(),
		"sessionIds", rep.sessions,
		"connections", rep.connections,
		"posts", rep.posts,
		"sent", rep.sent,
		"failed", rep.failed,
		"gone", rep.gone,
	}
	if rep.firstErr != nil {
		attrs = append(attrs, "firstError", rep.firstErr.Error())
	}
	if rep.listErr != nil {
		attrs = append(attrs, "sessionsNotListed", rep.listFailed, "listError", rep.listErr.Error())
	}
	if rep.deleteErr != nil {
		attrs = append(attrs, "deleteError", rep.deleteErr.Error())
	}
	n.logger().WarnContext(ctx, "progress: events not delivered", attrs...)
}

// Disabled is the upload.Progress of a function without a WebSocket
// endpoint: it drops every event, logging one warning per call, that is
// per request.
type Disabled struct {
	// Logger receives the warnings (default slog.Default()).
	Logger *slog.Logger
}

// DisabledMessage is the warning Disabled logs.
const DisabledMessage = "progress: no WebSocket endpoint configured (WEBSOCKET_ENDPOINT); events not sent"

// Announce logs that ev's events were not sent.
func (d Disabled) Announce(ctx context.Context, ev upload.Events) {
	if ev.Empty() {
		return
	}
	var sessionID string
	dropped := len(ev.Parts)
	if dropped > 0 {
		sessionID = ev.Parts[0].SessionID
	}
	if ev.Finalized != nil {
		sessionID = ev.Finalized.SessionID
		dropped++
	}
	kind := eventAttr(ev)
	l := d.Logger
	if l == nil {
		l = slog.Default()
	}
	l.WarnContext(ctx, DisabledMessage, string(kind.Key), kind.Value.AsInterface(), "sessionId", sessionID, "dropped", dropped)
}
