// Package invoke is the [followup.Invoker] adapter over AWS Lambda's Invoke
// API (aws-sdk-go-v2 service/lambda): [Invoker.InvokeAsync] invokes a
// function with InvocationType Event, which Lambda answers with 202 once
// the event is in the function's asynchronous queue; the function runs
// later, and the caller never waits for it.
//
// # Configuration
//
// The package only takes a [Config]; the service's config package reads the
// environment:
//
//	LAMBDA_ENDPOINT        Config.Endpoint: a Lambda-compatible endpoint, such
//	                       as the local stack's invoke API
//	                       (http://127.0.0.1:3002, what `sam local
//	                       start-lambda` serves). Unset → AWS Lambda.
//	AWS_REGION             Config.Region (default us-east-1)
//	AWS_ACCESS_KEY_ID      Config.AccessKeyID, SecretAccessKey and
//	AWS_SECRET_ACCESS_KEY  SessionToken: static credentials, used when
//	AWS_SESSION_TOKEN      AccessKeyID is set. Otherwise the default
//	                       credential chain (the Lambda role) signs the
//	                       requests, except that a request to an Endpoint
//	                       outside amazonaws.com is not signed at all (the
//	                       local invoke API accepts any signature and none).
//
// The function is named as Lambda accepts it: a name (the local invoke API
// knows the functions by followup.Functions' names), name:qualifier, or an
// ARN; in AWS, the deployed names (template.yaml's !Ref of the function).
//
// # IAM
//
// The caller's role needs lambda:InvokeFunction on each target function
// (arn:aws:lambda:{region}:{account}:function:{name}; add ":*" to the
// resource to allow qualified invocations too). Without it Lambda answers
// 403 AccessDeniedException, which InvokeAsync returns wrapped.
//
// # Considerations
//
// Each call is bounded by [Config.Timeout] (default [DefaultTimeout]) unless
// ctx ends sooner, retries included: the SDK's standard retryer retries
// throttling (429 TooManyRequestsException) and 5xx answers, so an event may
// be queued twice; the followup functions are idempotent per outbox row.
// An asynchronous payload is at most 1 MB (Lambda answers 413
// RequestTooLargeException beyond it).
package invoke

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	//lint:ignore SA1019 deprecated for want of an owner (contrib #9707), not broken; the SDK's own tracing needs github.com/aws/smithy-go/tracing/smithyoteltracing, not in go.mod.
	"go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"

	"github.com/mocbuilders/moc-upload/shared/followup"
)

// Defaults of a Config.
const (
	DefaultRegion  = "us-east-1"
	DefaultTimeout = 5 * time.Second
)

// Config configures the Lambda client.
type Config struct {
	// Endpoint (LAMBDA_ENDPOINT) is a Lambda-compatible endpoint, e.g.
	// http://127.0.0.1:3002; empty: AWS Lambda in Region.
	Endpoint string
	// Region is the region of the functions and of the signature (default
	// us-east-1).
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are static credentials,
	// used when AccessKeyID is set.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Timeout bounds each InvokeAsync, retries included (default
	// DefaultTimeout).
	Timeout time.Duration
}

// API is the part of *lambda.Client that Invoker calls.
type API interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Invoker invokes functions asynchronously through Lambda's Invoke API.
type Invoker struct {
	api     API
	timeout time.Duration
}

var _ followup.Invoker = (*Invoker)(nil)

// New returns an Invoker with the SDK client for cfg (see NewClient).
func New(ctx context.Context, cfg Config) (*Invoker, error) {
	c, err := NewClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return NewWithClient(c, cfg), nil
}

// NewWithClient returns an Invoker calling api; of cfg it uses only
// Timeout.
func NewWithClient(api API, cfg Config) *Invoker {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Invoker{api: api, timeout: timeout}
}

// NewClient returns the *lambda.Client that New uses for cfg: Endpoint as
// BaseEndpoint when set; static credentials when AccessKeyID is set, else
// no signature for an Endpoint outside amazonaws.com, else the default
// credential chain; an OpenTelemetry client span (otelaws) per call.
func NewClient(ctx context.Context, cfg Config) (*lambda.Client, error) {
	endpoint := strings.TrimRight(cfg.Endpoint, "/")
	var host string
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("invoke: endpoint %q must be an http:// or https:// URL", cfg.Endpoint)
		}
		host = u.Hostname()
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	switch {
	case cfg.AccessKeyID != "":
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	case endpoint != "" && !isAWSHost(host):
		opts = append(opts, awsconfig.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("invoke: load AWS config: %w", err)
	}
	// Each Invoke is an OpenTelemetry client span, a child of the span in
	// its context (the global provider: a no-op unless package telemetry
	// set one up).
	otelaws.AppendMiddlewares(&awsCfg.APIOptions)
	return lambda.NewFromConfig(awsCfg, func(o *lambda.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// InvokeAsync invokes function with payload, InvocationType Event, and
// returns once Lambda has queued the event (202). An error names the
// function; Lambda's own errors (e.g. *types.ResourceNotFoundException)
// stay reachable with errors.As.
func (i *Invoker) InvokeAsync(ctx context.Context, function string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, i.timeout)
	defer cancel()
	out, err := i.api.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(function),
		InvocationType: types.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("invoke %s: %w", function, err)
	}
	if out.StatusCode != http.StatusAccepted {
		return fmt.Errorf("invoke %s: %w: status %d, want 202", function, ErrNotQueued, out.StatusCode)
	}
	return nil
}

// ErrNotQueued is returned when Lambda answered an Event invocation with a
// success status other than 202 Accepted.
var ErrNotQueued = errors.New("event not queued")

// isAWSHost reports whether host is one of AWS's (amazonaws.com, and
// amazonaws.com.cn in China).
func isAWSHost(host string) bool {
	host = strings.ToLower(host)
	return strings.HasSuffix(host, ".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn")
}
