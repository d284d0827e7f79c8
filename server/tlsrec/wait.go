package tlsrec

import (
	"syscall"
)

// waitReadable returns once the socket has bytes to read or an end (a
// peek sees them), or with the read deadline's error. The wait is the
// runtime's network poller's, as for a read, but holds no buffer.
func waitReadable(rc syscall.RawConn) error {
	var one [1]byte
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			case nil:
				return true
			}
			perr = err
			return true
		}
	})
	if err != nil {
		return err
	}
	return perr
}
