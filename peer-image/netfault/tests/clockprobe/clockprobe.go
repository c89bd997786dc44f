// A Go clock probe for `netfault clock` tests: every 100 ms a new goroutine reads time.Now() (the
// Go runtime reads the vDSO's clock_gettime itself, not libc) and prints one line:
//   <wall ns> <monotonic ns since start> <slept ms>
// where <slept ms> is how long a 100 ms time.Sleep took (Go's timers run on the monotonic clock).
// Build: CGO_ENABLED=0 go build -o clockprobe-go clockprobe.go
package main

import (
	"fmt"
	"time"
)

func main() {
	start := time.Now()
	slept := int64(0)
	for {
		done := make(chan struct{})
		go func() {
			now := time.Now()
			fmt.Printf("%d %d %d\n", now.UnixNano(), now.Sub(start).Nanoseconds(), slept)
			close(done)
		}()
		<-done
		before := time.Now()
		time.Sleep(100 * time.Millisecond)
		slept = time.Since(before).Milliseconds()
	}
}
