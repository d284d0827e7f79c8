package tlsrec

import (
	"syscall"
)

// waitReadable returns once the socket has bytes to read or an end (a
// peek sees them), or with the read deadline's error. The wait is the
// runtime's network poller's, as for a read, but holds no buffer.
func waitReadable(rc syscall.RawConn) error {
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		var ready bool
		ready, perr = peek(int(fd))
		return ready
	})
	if err != nil {
		return err
	}
	return perr
}
