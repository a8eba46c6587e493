//go:build !unix

package thumbnail

import "time"

func processCPUTime() (time.Duration, bool) { return 0, false }
