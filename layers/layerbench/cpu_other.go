//go:build !unix

package layerbench

import "time"

// cpuTime is not measured outside Unix.
func cpuTime() time.Duration { return 0 }
