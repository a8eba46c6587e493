package app

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// Config is everything a function reads from its environment, once, at
// cold start. See README.md "Environment" for the list.
type Config struct {
	// DatabaseURL (DATABASE_URL, required): locally, the URL itself. A
	// deployed function has none in its configuration: its environment
	// names the database's Secrets Manager secret (DATABASE_SECRET_ARN,
	// with DATABASE_HOST, DATABASE_PORT, DATABASE_NAME and
	// DATABASE_POOL_MAX_CONNS), which secrets.Load turns into this URL at
	// cold start, before the configuration is read.
	DatabaseURL string

	Stage           string // STAGE: first segment of every object key (default "dev")
	S3Bucket        string // S3_BUCKET (required)
	S3Endpoint      string // S3_ENDPOINT: an S3-compatible endpoint; unset → AWS S3
	S3Region        string // AWS_REGION (default us-east-1)
	S3AccessKey     string // AWS_ACCESS_KEY_ID; unset → the default credential chain
	S3SecretKey     string // AWS_SECRET_ACCESS_KEY
	S3SSE           string // S3_SSE: server-side encryption (default AES256; "none" turns it off)
	S3PublicBaseURL string // S3_PUBLIC_BASE_URL: serve downloads from here instead of presigning

	Limits         upload.Limits
	DownloadURLTTL time.Duration // DOWNLOAD_URL_TTL_MINUTES (default 60, at least 15)
	UploadURLTTL   time.Duration // UPLOAD_URL_TTL_MINUTES (default 15): presigned PUTs of files and parts
	MaxBatchBytes  int64         // MAX_BATCH_BYTES (default 50000000): a batch upload's whole body
	// FinalizeConcurrency (FINALIZE_CONCURRENCY, default 32): the files one
	// finalize checks at once; 1 checks them one at a time (the sequential
	// mode, to compare against).
	FinalizeConcurrency int

	// WebSocketEndpoint (WEBSOCKET_ENDPOINT, optional) is the WebSocket
	// API's callback URL for progress events:
	// https://{api-id}.execute-api.{region}.amazonaws.com/{stage}, or the
	// local gateway's (http://127.0.0.1:3001). Unset: events are dropped
	// with a warning.
	WebSocketEndpoint string
	// AWSSessionToken (AWS_SESSION_TOKEN) goes with AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY when they are temporary (Lambda sets all three
	// from the function's role); the WebSocket management client signs
	// with all three.
	AWSSessionToken string

	// Follow-up work of finalize (package followup).

	// ThumbnailsEnabled (ENABLE_THUMBNAIL_GENERATION, default false): make
	// a 300x300 JPEG of each new MOC's first image, asynchronously.
	ThumbnailsEnabled bool
	// WebhookURL (MOC_FINALIZE_WEBHOOK_URL, optional): where the
	// moc.finalized webhook is POSTed; unset, none is sent.
	WebhookURL string
	// WebhookSecret (MOC_FINALIZE_WEBHOOK_SECRET, optional): the Standard
	// Webhooks secret ("whsec_…") that signs it; unset, it is unsigned.
	WebhookSecret string
	// WebhookBaseDelay (WEBHOOK_RETRY_BASE_DELAY_MS, default 1000): the
	// wait after the webhook's first failed attempt, doubled after each.
	WebhookBaseDelay time.Duration
	// ThumbnailFunction and WebhookFunction (THUMBNAIL_FUNCTION_NAME,
	// WEBHOOK_FUNCTION_NAME; default "Thumbnail", "Webhook"): the function
	// name or ARN Lambda's Invoke is given for each kind of work.
	ThumbnailFunction string
	WebhookFunction   string
	// RedispatchAfter (OUTBOX_REDISPATCH_AFTER_SECONDS, default 300): how
	// long the Sweeper lets a dispatched job stay undone before it
	// dispatches it again.
	RedispatchAfter time.Duration
	// LambdaEndpoint (LAMBDA_ENDPOINT, optional): a Lambda Invoke API
	// endpoint, such as the local stack's (http://127.0.0.1:3002); unset,
	// AWS Lambda.
	LambdaEndpoint string
}

// ConfigFromEnv reads and checks the configuration; the error lists every
// variable that is missing or malformed.
func ConfigFromEnv() (Config, error) { return ConfigFrom(os.Getenv) }

// ConfigFrom reads the configuration through getenv.
func ConfigFrom(getenv func(string) string) (Config, error) {
	var problems []string
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	required := func(name string) string {
		v := str(name, "")
		if v == "" {
			problems = append(problems, name+" is required")
		}
		return v
	}
	num := func(name string, def, min int) int {
		v := str(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			problems = append(problems, fmt.Sprintf("%s must be a whole number ≥ %d, got %q", name, min, v))
			return def
		}
		return n
	}
	boolean := func(name string) bool {
		v := str(name, "")
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s must be true or false, got %q", name, v))
		}
		return b
	}
	mb := func(name string, def int64) int64 {
		return int64(num(name, int(def/upload.MiB), 1)) * upload.MiB
	}

	d := upload.DefaultLimits()
	c := Config{
		DatabaseURL:     str("DATABASE_URL", ""),
		Stage:           str("STAGE", "dev"),
		S3Bucket:        required("S3_BUCKET"),
		S3Endpoint:      str("S3_ENDPOINT", ""),
		S3Region:        str("AWS_REGION", "us-east-1"),
		S3AccessKey:     str("AWS_ACCESS_KEY_ID", ""),
		S3SecretKey:     str("AWS_SECRET_ACCESS_KEY", ""),
		S3SSE:           str("S3_SSE", "AES256"),
		S3PublicBaseURL: strings.TrimRight(str("S3_PUBLIC_BASE_URL", ""), "/"),
		Limits: upload.Limits{
			PDFMaxBytes:       mb("UPLOAD_PDF_MAX_MB", d.PDFMaxBytes),
			PartsListMaxBytes: mb("UPLOAD_PARTSLIST_MAX_MB", d.PartsListMaxBytes),
			ImageMaxBytes:     mb("UPLOAD_IMAGE_MAX_MB", d.ImageMaxBytes),
			ImageMaxCount:     num("UPLOAD_IMAGE_MAX_COUNT", d.ImageMaxCount, 0),
			PartsListMaxCount: num("UPLOAD_PARTSLIST_MAX_COUNT", d.PartsListMaxCount, 0),
			SessionsPerDay:    num("UPLOAD_RATE_LIMIT_PER_DAY", d.SessionsPerDay, 1),
			SessionTTLMinutes: num("UPLOAD_SESSION_TTL_MINUTES", d.SessionTTLMinutes, 1),
		},
		DownloadURLTTL:      time.Duration(num("DOWNLOAD_URL_TTL_MINUTES", 60, 15)) * time.Minute,
		UploadURLTTL:        time.Duration(num("UPLOAD_URL_TTL_MINUTES", 15, 1)) * time.Minute,
		MaxBatchBytes:       int64(num("MAX_BATCH_BYTES", 50_000_000, 1)),
		FinalizeConcurrency: num("FINALIZE_CONCURRENCY", upload.DefaultFinalizeConcurrency, 1),

		AWSSessionToken:   str("AWS_SESSION_TOKEN", ""),
		WebSocketEndpoint: strings.TrimRight(str("WEBSOCKET_ENDPOINT", ""), "/"),

		ThumbnailsEnabled: boolean("ENABLE_THUMBNAIL_GENERATION"),
		WebhookURL:        str("MOC_FINALIZE_WEBHOOK_URL", ""),
		WebhookSecret:     str("MOC_FINALIZE_WEBHOOK_SECRET", ""),
		WebhookBaseDelay:  time.Duration(num("WEBHOOK_RETRY_BASE_DELAY_MS", 1000, 0)) * time.Millisecond,
		ThumbnailFunction: str("THUMBNAIL_FUNCTION_NAME", followup.ThumbnailFunction),
		WebhookFunction:   str("WEBHOOK_FUNCTION_NAME", followup.WebhookFunction),
		RedispatchAfter:   time.Duration(num("OUTBOX_REDISPATCH_AFTER_SECONDS", 300, 1)) * time.Second,
		LambdaEndpoint:    strings.TrimRight(str("LAMBDA_ENDPOINT", ""), "/"),
	}
	if c.WebhookURL != "" {
		// The errors name what is wrong, never the secret.
		if _, err := webhook.New(c.WebhookURL, c.WebhookSecret); err != nil {
			problems = append(problems, "MOC_FINALIZE_WEBHOOK_URL / MOC_FINALIZE_WEBHOOK_SECRET: "+err.Error())
		}
	} else if c.WebhookSecret != "" {
		if err := webhook.CheckSecret(c.WebhookSecret); err != nil {
			problems = append(problems, "MOC_FINALIZE_WEBHOOK_SECRET: "+err.Error())
		}
	}
	if c.LambdaEndpoint != "" {
		if u, err := url.Parse(c.LambdaEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("LAMBDA_ENDPOINT must be an http:// or https:// URL, got %q", c.LambdaEndpoint))
		}
	}
	if c.WebSocketEndpoint != "" {
		if err := progress.CheckEndpoint(c.WebSocketEndpoint); err != nil {
			problems = append(problems, "WEBSOCKET_ENDPOINT: "+err.Error())
		}
	}
	if c.DatabaseURL == "" {
		if arn := str("DATABASE_SECRET_ARN", ""); arn != "" {
			problems = append(problems, "DATABASE_URL is not set although DATABASE_SECRET_ARN is: call secrets.Load first")
		} else {
			problems = append(problems, "DATABASE_URL is required (or, deployed, DATABASE_SECRET_ARN)")
		}
	}
	if strings.EqualFold(c.S3SSE, "none") {
		c.S3SSE = ""
	}
	if (c.S3AccessKey == "") != (c.S3SecretKey == "") {
		problems = append(problems, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
	}
	if strings.ContainsAny(c.Stage, "/ ") {
		problems = append(problems, "STAGE must not contain '/' or spaces")
	}
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}
