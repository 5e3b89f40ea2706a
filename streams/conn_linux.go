//go:build linux

package streams

import (
	"runtime"
	"sync"
	"syscall"
)

// epollET is EPOLLET as the uint32 of an event mask.
const epollET = 1 << 31

// hangups tells, with one epoll instance and one goroutine for all the
// taken-over connections, which clients closed theirs: nothing else reads
// them, and the runtime's poller does not say.
type hangups struct {
	epfd int
	mu   sync.Mutex
	subs map[int32]*connSub
}

func newHangups() *hangups {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil // the probe in the heartbeat loop notices instead
	}
	return &hangups{epfd: fd, subs: map[int32]*connSub{}}
}

// watch adds c's socket; it reports false if it could not.
func (h *hangups) watch(c *connSub) bool {
	sw, ok := c.raw.(sockWriter)
	if !ok {
		return false
	}
	var added bool
	_ = sw.rc.Control(func(fd uintptr) {
		h.mu.Lock()
		defer h.mu.Unlock()
		ev := syscall.EpollEvent{Events: uint32(syscall.EPOLLRDHUP) | epollET, Fd: int32(fd)}
		if syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev) == nil {
			h.subs[int32(fd)] = c
			c.hupFD = int32(fd)
			added = true
		}
	})
	return added
}

// forget removes c's socket, before it is closed.
func (h *hangups) forget(c *connSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.hupFD < 0 || h.subs[c.hupFD] != c {
		return
	}
	delete(h.subs, c.hupFD)
	_ = syscall.EpollCtl(h.epfd, syscall.EPOLL_CTL_DEL, int(c.hupFD), nil)
	c.hupFD = -1
}

// run waits for hang-ups until stop is closed, then closes the instance.
func (h *hangups) run(stop <-chan struct{}) {
	defer syscall.Close(h.epfd)
	evs := make([]syscall.EpollEvent, 128)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := syscall.EpollWait(h.epfd, evs, 100)
		if err != nil && err != syscall.EINTR {
			return
		}
		for _, ev := range evs[:max(n, 0)] {
			h.mu.Lock()
			c := h.subs[ev.Fd]
			h.mu.Unlock()
			if c != nil {
				c.peerGone.Store(true)
				c.schedule()
			}
		}
		if n > 0 {
			// The writer just woken waits on this P's run queue: let it
			// run before this goroutine blocks in epoll_wait, which
			// would hold the P until the runtime takes it back (up to
			// 10 ms).
			runtime.Gosched()
		}
	}
}
