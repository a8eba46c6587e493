package wsgateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
)

// conn is one open WebSocket connection.
type conn struct {
	g           *Gateway
	id          string
	connectedAt time.Time
	lastActive  atomic.Int64 // Unix ms of the client's last message
	sourceIP    string
	userAgent   string
	host        string
	authorizer  map[string]any
	ws          *websocket.Conn // set by run; used only by run's goroutines

	out  chan outgoing // to the writer, in order
	done chan struct{} // closed once the connection has ended

	closeOnce   sync.Once
	closeReq    chan struct{} // closed when the gateway closes the connection
	mu          sync.Mutex
	closeCode   websocket.StatusCode // set when the gateway closes it
	closeReason string
}

// outgoing is one message for the client; sent, when not nil, receives the
// outcome of its write.
type outgoing struct {
	typ  websocket.MessageType
	data []byte
	sent chan error
}

// run reads the client's messages until the connection ends, then runs
// $disconnect, once.
func (c *conn) run(ws *websocket.Conn) {
	c.ws = ws
	ctx, cancel := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go c.writeLoop(ctx, writerDone)
	go func() {
		select {
		case <-c.closeReq:
			c.mu.Lock()
			code, reason := c.closeCode, c.closeReason
			c.mu.Unlock()
			// The handshake ends the reader's Read, then run.
			_ = ws.Close(code, reason)
		case <-ctx.Done():
		}
	}()

	code, reason := websocket.StatusAbnormalClosure, ""
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Reason
			}
			break
		}
		c.lastActive.Store(time.Now().UnixMilli())
		c.message(ctx, typ, data)
	}
	c.g.unregister(c)
	close(c.done)
	cancel()
	<-writerDone
	_ = c.ws.CloseNow()

	c.mu.Lock()
	if c.closeCode != 0 {
		code, reason = c.closeCode, c.closeReason
	}
	c.mu.Unlock()
	c.disconnect(code, reason)
}

// message invokes $default with one client message and queues its answer.
func (c *conn) message(ctx context.Context, typ websocket.MessageType, data []byte) {
	start := time.Now()
	ev := events.APIGatewayWebsocketProxyRequest{Body: string(data)}
	if typ == websocket.MessageBinary {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(data), true
	}
	ev.RequestContext = c.requestContext("$default", "MESSAGE", start)
	ev.RequestContext.MessageID = c.g.opts.NewID()
	reqID := ev.RequestContext.RequestID
	if !c.g.hasHandler("$default") {
		c.send(gatewayMessage("Forbidden", c.id, reqID))
		return
	}
	resp, err := c.g.invoke(ctx, "$default", ev)
	if err != nil {
		c.g.log.Error("websocket $default function failed", "connectionId", c.id, "err", err, "requestId", reqID)
		c.send(gatewayMessage("Internal server error", c.id, reqID))
		return
	}
	c.g.log.Info("websocket message", "connectionId", c.id, "bytes", len(data), "status", resp.StatusCode,
		"ms", time.Since(start).Milliseconds(), "requestId", reqID)
	if resp.Body == "" {
		return
	}
	m := outgoing{typ: websocket.MessageText, data: []byte(resp.Body)}
	if resp.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(resp.Body)
		if err != nil {
			c.g.log.Error("websocket $default response: bad base64 body", "connectionId", c.id, "err", err)
			return
		}
		m = outgoing{typ: websocket.MessageBinary, data: b}
	}
	c.send(m)
}

// send queues m without waiting; false when the queue is full (the message
// is dropped).
func (c *conn) send(m outgoing) bool {
	select {
	case c.out <- m:
		return true
	default:
		c.g.log.Warn("websocket client buffer full: message dropped", "connectionId", c.id)
		return false
	}
}

// post queues data and waits until it is written: nil, errGone when the
// connection ended first, errFull when too many messages wait, or ctx's
// error.
func (c *conn) post(ctx context.Context, data []byte) error {
	sent := make(chan error, 1)
	select {
	case c.out <- outgoing{typ: websocket.MessageText, data: data, sent: sent}:
	default:
		return errFull
	}
	select {
	case err := <-sent:
		if err != nil {
			return errGone
		}
		return nil
	case <-c.done:
		// The writer may still have written it just before the end.
		select {
		case err := <-sent:
			if err == nil {
				return nil
			}
		default:
		}
		return errGone
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errFull = errors.New("client buffer full")

// writeLoop is the connection's only writer.
func (c *conn) writeLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case m := <-c.out:
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.ws.Write(wctx, m.typ, m.data)
			cancel()
			if m.sent != nil {
				m.sent <- err
			}
			if err != nil {
				c.g.log.Info("websocket write failed: closing", "connectionId", c.id, "err", err)
				_ = c.ws.CloseNow() // the reader sees it and ends the connection
				c.fail(ctx)
				return
			}
		case <-ctx.Done():
			c.fail(ctx)
			return
		}
	}
}

// fail answers every message still queued: gone. It returns once the
// connection has ended and nothing is left.
func (c *conn) fail(ctx context.Context) {
	for {
		select {
		case m := <-c.out:
			if m.sent != nil {
				m.sent <- errGone
			}
		case <-ctx.Done():
			for {
				select {
				case m := <-c.out:
					if m.sent != nil {
						m.sent <- errGone
					}
				default:
					return
				}
			}
		}
	}
}

// closeWith closes the connection from the gateway's side (DELETE
// @connections, Close): it is unreachable at once, and ends when the close
// handshake is over; run then invokes $disconnect.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.g.unregister(c)
		c.mu.Lock()
		c.closeCode, c.closeReason = code, reason
		c.mu.Unlock()
		close(c.closeReq)
	})
}

// disconnect invokes $disconnect.
func (c *conn) disconnect(code websocket.StatusCode, reason string) {
	now := time.Now()
	hdr := map[string]string{"Host": c.host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
	multi := map[string][]string{}
	for k, v := range hdr {
		multi[k] = []string{v}
	}
	ev := events.APIGatewayWebsocketProxyRequest{
		Headers:           hdr,
		MultiValueHeaders: multi,
		RequestContext:    c.requestContext("$disconnect", "DISCONNECT", now),
	}
	ev.RequestContext.DisconnectStatusCode = int64(code)
	ev.RequestContext.DisconnectReason = &reason
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.g.invoke(ctx, "$disconnect", ev)
	if err != nil {
		c.g.log.Error("websocket $disconnect function failed", "connectionId", c.id, "err", err,
			"requestId", ev.RequestContext.RequestID)
		return
	}
	c.g.log.Info("websocket disconnected", "connectionId", c.id, "code", int(code), "reason", reason,
		"status", resp.StatusCode, "requestId", ev.RequestContext.RequestID,
		"connectedFor", now.Sub(c.connectedAt).Round(time.Millisecond).String())
}

// requestContext is what every event of this connection carries.
func (c *conn) requestContext(routeKey, eventType string, now time.Time) events.APIGatewayWebsocketProxyRequestContext {
	reqID := c.g.opts.NewID()
	auth := make(map[string]any, len(c.authorizer))
	for k, v := range c.authorizer {
		auth[k] = v
	}
	return events.APIGatewayWebsocketProxyRequestContext{
		RouteKey:          routeKey,
		EventType:         eventType,
		ExtendedRequestID: reqID,
		RequestID:         reqID,
		RequestTime:       now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
		RequestTimeEpoch:  now.UnixMilli(),
		MessageDirection:  "IN",
		Stage:             c.g.opts.Stage,
		ConnectedAt:       c.connectedAt.UnixMilli(),
		Identity:          events.APIGatewayRequestIdentity{SourceIP: c.sourceIP, UserAgent: c.userAgent},
		DomainName:        c.host,
		ConnectionID:      c.id,
		APIID:             c.g.opts.APIID,
		Authorizer:        auth,
	}
}

// gatewayMessage is what API Gateway itself sends a client whose message
// found no integration or a failing one.
func gatewayMessage(msg, connectionID, requestID string) outgoing {
	b, _ := json.Marshal(struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}{msg, connectionID, requestID})
	return outgoing{typ: websocket.MessageText, data: b}
}
