// Package secrets gives a deployed function its credentials without putting
// them in its Lambda configuration: the function's environment names
// Secrets Manager secrets by ARN (readable with
// lambda:GetFunctionConfiguration, harmless), and Load reads them once, at
// cold start, into the process's own environment, where the configuration
// readers (app.ConfigFromEnv, OpenTelemetry's exporter) find them exactly
// as they find the plain variables of the local stack. The values live as
// long as the process (the instance) and are never read again.
//
// # Variables
//
//   - DATABASE_SECRET_ARN: the database's credentials, the JSON an RDS or
//     Aurora secret holds ({"username","password"} and, for secrets
//     attached to a database, "host", "port", "dbname"); Load builds
//     DATABASE_URL from it (see DatabaseURL), with DATABASE_HOST,
//     DATABASE_PORT and DATABASE_NAME, when set, overriding the secret's
//     (the RDS Proxy endpoint instead of the cluster's), and
//     DATABASE_POOL_MAX_CONNS the pool size (default 2). A secret whose
//     value is a postgres:// URL is taken as it is.
//   - MOC_FINALIZE_WEBHOOK_SECRET_ARN → MOC_FINALIZE_WEBHOOK_SECRET
//   - OTEL_EXPORTER_OTLP_HEADERS_SECRET_ARN → OTEL_EXPORTER_OTLP_HEADERS
//
// A variable that is set already is left alone (DATABASE_URL of the local
// stack wins over an ARN). With no ARN set, Load does nothing: no AWS
// configuration is loaded, so a local cold start costs nothing.
//
// The Secrets Manager client is aws-sdk-go-v2's with the default
// configuration: the function role's credentials, and the standard
// AWS_ENDPOINT_URL_SECRETS_MANAGER (or AWS_ENDPOINT_URL) to reach another
// endpoint, as the tests do. IAM: secretsmanager:GetSecretValue on each
// secret (and kms:Decrypt when the secret has a customer-managed key).
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// DatabaseSecretARN is the variable naming the database's secret.
const DatabaseSecretARN = "DATABASE_SECRET_ARN"

// DefaultPoolMaxConns is the pool size of a deployed function: a Lambda
// instance serves one request at a time, and one connection more lets a
// request's follow-up query (progress, outbox) not wait for the first.
// README "Connections" has the arithmetic against the database's limit.
const DefaultPoolMaxConns = 2

// QueryExecMode is pgx's default_query_exec_mode of a deployed function.
// "cache_describe" sends every query as the unnamed statement of the
// extended protocol, its parameter and result types described once per
// connection and cached client-side: no named prepared statement ever
// exists on the server, so RDS Proxy (which multiplexes the extended
// protocol's unnamed statements since November 2023) can hand the server
// connection to another client after each transaction instead of pinning
// it. pgx's default, cache_statement, prepares named statements per
// connection, which pins. "exec" would skip the describe but types
// parameters from their Go values alone, and PostgreSQL then refuses a
// []byte for a json column (shared/postgres's tests fail with it);
// simple_protocol interpolates parameters client-side.
const QueryExecMode = "cache_describe"

// loadTimeout bounds reading the secrets at cold start (Lambda's init
// phase has 10 s).
const loadTimeout = 5 * time.Second

// plain maps each variable naming a secret to the variable its value
// fills as it is.
var plain = map[string]string{
	"MOC_FINALIZE_WEBHOOK_SECRET_ARN":       "MOC_FINALIZE_WEBHOOK_SECRET",
	"OTEL_EXPORTER_OTLP_HEADERS_SECRET_ARN": "OTEL_EXPORTER_OTLP_HEADERS",
}

// Getter is the one Secrets Manager call used; *secretsmanager.Client is
// one.
type Getter interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var (
	cacheMu sync.Mutex
	cache   = map[string]string{} // secret ARN → value, for the life of the process
)

// Load reads the secrets the environment names into the process's
// environment (see the package doc); once per process, at cold start.
func Load(ctx context.Context) error {
	values, err := Resolve(ctx, os.Getenv, nil)
	if err != nil {
		return err
	}
	for k, v := range values {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("secrets: set %s: %w", k, err)
		}
	}
	return nil
}

// Resolve returns the variables the secrets named by getenv's variables
// stand for, read with client (nil: a Secrets Manager client with the
// default AWS configuration, made only when a secret is named). Values
// read before, by this process, are not read again.
func Resolve(ctx context.Context, getenv func(string) string, client Getter) (map[string]string, error) {
	wanted := map[string]string{} // target variable → ARN
	for arnVar, target := range plain {
		if arn := strings.TrimSpace(getenv(arnVar)); arn != "" && getenv(target) == "" {
			wanted[target] = arn
		}
	}
	dbARN := strings.TrimSpace(getenv(DatabaseSecretARN))
	if dbARN != "" && getenv("DATABASE_URL") == "" {
		wanted["DATABASE_URL"] = dbARN
	}
	if len(wanted) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	if client == nil {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("secrets: AWS configuration: %w", err)
		}
		client = secretsmanager.NewFromConfig(cfg)
	}
	out := map[string]string{}
	var problems []error
	for target, arn := range wanted {
		v, err := get(ctx, client, arn)
		if err == nil && target == "DATABASE_URL" {
			v, err = DatabaseURL(v, getenv)
		}
		if err != nil {
			// Names the variable and the ARN, never a value.
			problems = append(problems, fmt.Errorf("%s (%s): %w", target, arn, err))
			continue
		}
		out[target] = v
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return out, nil
}

// get reads one secret's string, from the cache when this process has
// read it before.
func get(ctx context.Context, client Getter, arn string) (string, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if v, ok := cache[arn]; ok {
		return v, nil
	}
	res, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", err
	}
	if res.SecretString == nil || *res.SecretString == "" {
		return "", errors.New("the secret has no string value")
	}
	cache[arn] = *res.SecretString
	return *res.SecretString, nil
}

// dbSecret is the JSON of an RDS or Aurora database secret (the one
// ManageMasterUserPassword makes has only username and password).
type dbSecret struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Host     string          `json:"host"`
	Port     json.RawMessage `json:"port"` // a number, or a string in hand-made secrets
	DBName   string          `json:"dbname"`
}

// DatabaseURL builds the functions' DATABASE_URL from a database secret's
// value and the non-secret variables DATABASE_HOST, DATABASE_PORT,
// DATABASE_NAME and DATABASE_POOL_MAX_CONNS, which win over the secret's
// own host, port and dbname. The URL asks for TLS with the server's
// certificate verified against the system's roots and host name
// (sslmode=verify-full: RDS Proxy's certificates are public ACM ones), a
// pool of DefaultPoolMaxConns and pgx's QueryExecMode. A value that is
// already a postgres:// URL is returned as it is.
func DatabaseURL(secret string, getenv func(string) string) (string, error) {
	s := strings.TrimSpace(secret)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return s, nil
	}
	var d dbSecret
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return "", errors.New("the secret is neither a postgres:// URL nor JSON with username and password")
	}
	if d.Username == "" || d.Password == "" {
		return "", errors.New("the secret's JSON lacks username or password")
	}
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	port := strings.Trim(string(d.Port), `"`)
	if port == "" || port == "null" {
		port = "5432"
	}
	host, port, dbname := env("DATABASE_HOST", d.Host), env("DATABASE_PORT", port), env("DATABASE_NAME", d.DBName)
	if host == "" {
		return "", errors.New("no host: set DATABASE_HOST (the secret has none)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a TCP port", port)
	}
	if dbname == "" {
		dbname = "postgres"
	}
	pool := env("DATABASE_POOL_MAX_CONNS", strconv.Itoa(DefaultPoolMaxConns))
	if n, err := strconv.Atoi(pool); err != nil || n < 1 {
		return "", fmt.Errorf("DATABASE_POOL_MAX_CONNS must be a whole number ≥ 1, got %q", pool)
	}
	q := url.Values{}
	q.Set("sslmode", "verify-full")
	q.Set("pool_max_conns", pool)
	q.Set("default_query_exec_mode", QueryExecMode)
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(d.Username, d.Password),
		Host:     net.JoinHostPort(host, port),
		Path:     "/" + dbname,
		RawQuery: q.Encode(),
	}
	return u.String(), nil
}
