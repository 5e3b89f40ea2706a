//go:build !linux

package streams

// hangups is Linux's epoll watch of taken-over connections; elsewhere the
// heartbeat loop's probe notices clients that left.
type hangups struct{}

func newHangups() *hangups                  { return nil }
func (h *hangups) watch(*connSub) bool      { return false }
func (h *hangups) forget(*connSub)          {}
func (h *hangups) run(stop <-chan struct{}) {}
