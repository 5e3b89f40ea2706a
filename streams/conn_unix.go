//go:build unix

package streams

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter writes to a plain socket without the runtime's poller: a
// write that finds no room returns at once instead of waiting, so the
// writers never set a deadline (a timer) for a burst.
type rawWriter interface {
	// writeNow writes what fits of p now; blocked reports that only n
	// bytes fit.
	writeNow(p []byte) (n int, blocked bool, err error)
	// peerClosed reports whether the client has closed its side.
	peerClosed() bool
}

type sockWriter struct{ rc syscall.RawConn }

// newRawWriter returns a rawWriter for a TCP or Unix socket, nil for
// anything else (TLS).
func newRawWriter(c net.Conn) rawWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return sockWriter{rc}
}

func (w sockWriter) writeNow(p []byte) (n int, blocked bool, err error) {
	var werr error
	cerr := w.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			switch {
			case err == nil:
			case errors.Is(err, syscall.EINTR):
			case errors.Is(err, syscall.EAGAIN):
				blocked = true
				return true
			default:
				werr = err
				return true
			}
		}
		return true // never wait: a full socket is handed to a goroutine
	})
	if cerr != nil {
		return n, false, cerr
	}
	return n, blocked, werr
}

func (w sockWriter) peerClosed() bool {
	var closed bool
	var b [1]byte
	_ = w.rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
		return true
	})
	return closed
}
