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
	// bytes fit. Only the goroutine running the connection calls it, and
	// only it closes the connection (connSub.end), so the descriptor it
	// writes cannot be closed meanwhile.
	writeNow(p []byte) (n int, blocked bool, err error)
	// peerClosed reports whether the client has closed its side.
	peerClosed() bool
}

// sockWriter writes a socket's descriptor with write(2) itself: the
// runtime's RawConn.Write would cost a closure, its descriptor lock and a
// poller reset on every write, and a writer never waits on the poller.
type sockWriter struct {
	rc syscall.RawConn
	fd int
}

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
	fd := -1
	if rc.Control(func(u uintptr) { fd = int(u) }) != nil || fd < 0 {
		return nil
	}
	return sockWriter{rc: rc, fd: fd}
}

func (w sockWriter) writeNow(p []byte) (n int, blocked bool, err error) {
	for n < len(p) {
		k, err := syscall.Write(w.fd, p[n:])
		if k > 0 {
			n += k
		}
		switch {
		case err == nil && k <= 0:
			return n, true, nil // no progress: let a goroutine wait for room
		case err == nil:
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN):
			return n, true, nil // a full socket is handed to a goroutine
		default:
			return n, false, err
		}
	}
	return n, false, nil
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
