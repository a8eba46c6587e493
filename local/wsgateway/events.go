package wsgateway

import (
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// connectEvent is the $connect event for the upgrade request r.
func (g *Gateway) connectEvent(r *http.Request, c *conn, now time.Time) events.APIGatewayWebsocketProxyRequest {
	multiHeaders := map[string][]string{}
	for k, vs := range r.Header {
		multiHeaders[k] = append([]string(nil), vs...)
	}
	// API Gateway adds these; the values are the local connection's.
	_, port, _ := net.SplitHostPort(r.Host)
	if port == "" {
		port = "80"
	}
	multiHeaders["X-Forwarded-For"] = []string{c.sourceIP}
	multiHeaders["X-Forwarded-Port"] = []string{port}
	multiHeaders["X-Forwarded-Proto"] = []string{"http"}
	if _, ok := multiHeaders["Host"]; !ok {
		multiHeaders["Host"] = []string{r.Host}
	}
	multiQuery := map[string][]string{}
	for k, vs := range r.URL.Query() {
		multiQuery[k] = vs
	}
	return events.APIGatewayWebsocketProxyRequest{
		Headers:                         lastValues(multiHeaders),
		MultiValueHeaders:               multiHeaders,
		QueryStringParameters:           lastValues(multiQuery),
		MultiValueQueryStringParameters: nilIfEmpty(multiQuery),
		RequestContext:                  c.requestContext("$connect", "CONNECT", now),
	}
}

// lastValues is the single-valued form of a multi-valued map: the last
// value, as payload 1.0 events have it.
func lastValues(m map[string][]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, vs := range m {
		if len(vs) > 0 {
			out[k] = vs[len(vs)-1]
		}
	}
	return out
}

func nilIfEmpty(m map[string][]string) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
