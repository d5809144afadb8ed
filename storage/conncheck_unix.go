//go:build unix

package storage

import (
	"errors"
	"io"
	"net"
	"syscall"
)

var errUnexpectedRead = errors.New("an idle connection has unread data")

// connCheck reports whether an idle connection is still open, without
// waiting: a read on its socket must find nothing to read yet. A database
// that went away and came back has closed every connection the pool
// holds; each would otherwise fail one query before the pool let it go.
func connCheck(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var checkErr error
	err = raw.Read(func(fd uintptr) bool {
		var buf [1]byte
		n, err := syscall.Read(int(fd), buf[:])
		switch {
		case n == 0 && err == nil:
			checkErr = io.EOF
		case n > 0:
			checkErr = errUnexpectedRead
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
			checkErr = nil
		default:
			checkErr = err
		}
		return true // never wait for data
	})
	if err != nil {
		return err
	}
	return checkErr
}
