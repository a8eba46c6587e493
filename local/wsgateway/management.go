package wsgateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// manage serves the management API for connection id.
func (g *Gateway) manage(w http.ResponseWriter, r *http.Request, id string) {
	w.Header()["x-amzn-RequestId"] = []string{uuid.NewString()}
	status := g.manageStatus(w, r, id)
	g.log.Info("websocket management", "method", r.Method, "connectionId", id, "status", status)
}

func (g *Gateway) manageStatus(w http.ResponseWriter, r *http.Request, id string) int {
	switch r.Method {
	case http.MethodPost:
		data, err := io.ReadAll(io.LimitReader(r.Body, MaxMessageBytes+1))
		if err != nil {
			writeMessage(w, http.StatusBadRequest, "Bad Request")
			return http.StatusBadRequest
		}
		if len(data) > MaxMessageBytes {
			writeAWSError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException",
				`{"message":"Message too long"}`)
			return http.StatusRequestEntityTooLarge
		}
		c := g.lookup(id)
		if c == nil {
			return gone(w)
		}
		switch err := c.post(r.Context(), data); {
		case err == nil:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		case errors.Is(err, errFull):
			writeAWSError(w, http.StatusTooManyRequests, "LimitExceededException", `{"message":"Limit Exceeded"}`)
			return http.StatusTooManyRequests
		case errors.Is(err, errGone):
			return gone(w)
		default: // the caller went away
			return 499
		}
	case http.MethodGet:
		c := g.lookup(id)
		if c == nil {
			return gone(w)
		}
		b, _ := json.Marshal(connectionInfo{
			ConnectedAt:  isoTime(c.connectedAt),
			Identity:     identity{SourceIP: c.sourceIP, UserAgent: c.userAgent},
			LastActiveAt: isoTime(time.UnixMilli(c.lastActive.Load())),
		})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
		return http.StatusOK
	case http.MethodDelete:
		c := g.lookup(id)
		if c == nil {
			return gone(w)
		}
		c.closeWith(websocket.StatusNormalClosure, "")
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	}
	writeAWSError(w, http.StatusForbidden, "ForbiddenException", `{"message":"Forbidden"}`)
	return http.StatusForbidden
}

// gone is API Gateway's answer for a connection that is not there: 410,
// x-amzn-ErrorType GoneException, an empty JSON body.
func gone(w http.ResponseWriter) int {
	writeAWSError(w, http.StatusGone, "GoneException", "")
	return http.StatusGone
}

// connectionInfo is GetConnection's answer, with the model's JSON names.
type connectionInfo struct {
	ConnectedAt  string   `json:"connectedAt"`
	Identity     identity `json:"identity"`
	LastActiveAt string   `json:"lastActiveAt"`
}

type identity struct {
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// isoTime formats t as AWS's ISO 8601 timestamps: UTC, milliseconds.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
