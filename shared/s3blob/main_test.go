package s3blob

import (
	"os"
	"testing"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// s3env returns the Config of a fresh bucket on the test S3 server
// (versitygw, started once per test binary by stacktest).
func s3env(t *testing.T) Config {
	t.Helper()
	env := stacktest.S3(t)
	return Config{
		Bucket:          env.Bucket,
		Endpoint:        env.Endpoint,
		Region:          env.Region,
		AccessKeyID:     env.AccessKey,
		SecretAccessKey: env.SecretKey,
		SSE:             DefaultSSE,
	}
}
