package progress

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	//lint:ignore SA1019 deprecated for want of an owner (contrib #9707), not broken; the SDK's own tracing needs github.com/aws/smithy-go/tracing/smithyoteltracing, not in go.mod.
	"go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The SDK retryer's limits per post: one retry of a throttled or failed
// post, soon enough to fit in the Notifier's budget (the SDK's default
// backoff may wait longer than the whole budget).
const (
	DefaultMaxAttempts = 2
	MaxBackoff         = 200 * time.Millisecond
)

// ClientConfig configures the management API client.
type ClientConfig struct {
	// Endpoint is the WebSocket API's callback URL (WEBSOCKET_ENDPOINT):
	// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, or the
	// local gateway's, e.g. http://127.0.0.1:3001. Empty: no client.
	Endpoint string
	// Region signs the requests (AWS_REGION, default us-east-1); the
	// region in an execute-api host name wins over it.
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are used as static
	// credentials when AccessKeyID is set (Lambda sets all three from the
	// function's role). Otherwise the requests are not signed when Endpoint
	// is outside amazonaws.com (the local gateway), and signed with the
	// default credential chain when it is in it.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// MaxAttempts is the retryer's attempt limit per post (default
	// DefaultMaxAttempts).
	MaxAttempts int
}

// CheckEndpoint reports what is wrong with a WEBSOCKET_ENDPOINT value, or
// nil: it must be an absolute http or https URL without query or fragment.
func CheckEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("%q is not a URL (want https://… or http://…): %w", endpoint, err)
	}
	switch {
	case u.Scheme == "wss" || u.Scheme == "ws":
		return fmt.Errorf("%q is the URL clients connect to; the callback URL is the same with https:// (http:// locally)", endpoint)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q must start with https:// or http://", endpoint)
	case u.Host == "":
		return fmt.Errorf("%q has no host", endpoint)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q must not have a query or fragment", endpoint)
	}
	return nil
}

// NewClient returns the management API client for cfg.Endpoint, with an
// OpenTelemetry client span (otelaws) per call.
func NewClient(ctx context.Context, cfg ClientConfig) (*apigatewaymanagementapi.Client, error) {
	if err := CheckEndpoint(cfg.Endpoint); err != nil {
		return nil, fmt.Errorf("progress: WebSocket endpoint: %w", err)
	}
	u, _ := url.Parse(cfg.Endpoint)
	region := cfg.Region
	if r := executeAPIRegion(u.Hostname()); r != "" {
		region = r
	}
	if region == "" {
		region = "us-east-1"
	}
	attempts := cfg.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = MaxBackoff
			})
		}),
		// A Notifier posts to DefaultConcurrency connections at once (and
		// moc-local may run two requests' fan-outs at once); the SDK's
		// transport keeps only 10 idle connections per host, so a fan-out
		// to many connections would open (and TLS-handshake) the rest anew
		// for every event.
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = 2 * DefaultConcurrency
		})),
	}
	switch {
	case cfg.AccessKeyID != "":
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	case !isAWSHost(u.Hostname()):
		opts = append(opts, awsconfig.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("progress: load AWS config: %w", err)
	}
	// Each post is an OpenTelemetry client span, a child of the span in
	// its context (the global provider: a no-op unless package telemetry
	// set one up).
	otelaws.AppendMiddlewares(&awsCfg.APIOptions)
	endpoint := strings.TrimRight(cfg.Endpoint, "/")
	return apigatewaymanagementapi.NewFromConfig(awsCfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	}), nil
}

// Open returns the upload.Progress for cfg: a Notifier over conns and a
// client of cfg.Endpoint, or Disabled when cfg.Endpoint is empty.
func Open(ctx context.Context, conns Connections, cfg ClientConfig) (upload.Progress, error) {
	if cfg.Endpoint == "" {
		return Disabled{}, nil
	}
	c, err := NewClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return New(conns, c), nil
}

// isAWSHost reports whether host is one of AWS's (amazonaws.com, and
// amazonaws.com.cn in China).
func isAWSHost(host string) bool {
	host = strings.ToLower(host)
	return strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn")
}

// executeAPIRegion is the region of {api-id}.execute-api.{region}.amazonaws.com,
// or "" for any other host.
func executeAPIRegion(host string) string {
	labels := strings.Split(strings.ToLower(host), ".")
	for i := 1; i+1 < len(labels); i++ {
		if labels[i] == "execute-api" && labels[i+1] != "amazonaws" && isAWSHost(host) {
			return labels[i+1]
		}
	}
	return ""
}
