//go:build !linux

package tlsrec

import "errors"

// Parking uses Linux's epoll and MSG_PEEK; elsewhere a
// connection is read as any other.

type parking struct{}

var ErrNotParkable = errors.New("tlsrec: the connection cannot be parked")

func Parked() int { return 0 }

func (c *Conn) Park(fn func(error)) (bool, error) { return false, ErrNotParkable }

func (c *Conn) unpark() {}
