package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go"
)

// The "floor" server is the least a server can do to fan one subject out
// to many SSE subscribers: the response head written once, then, for each
// event, the same pre-encoded bytes written to every connection in a tight
// loop, one write system call per subscriber per event, on as many
// goroutines as there are cores. No ids of its own per connection, no
// heartbeats, no slow-subscriber rule, no hang-up watch: what it costs is
// the floor for "one write per subscriber per event" on this machine.

// floorConn is one subscriber of the floor server.
type floorConn struct {
	conn net.Conn
	fd   int
}

// floorShard is the subscribers one writer goroutine serves, and the
// events it has yet to write to them.
type floorShard struct {
	mu    sync.Mutex
	conns []floorConn
	ch    chan []byte
}

// floorServer fans a core NATS subject out to its shards.
type floorServer struct {
	shards []*floorShard
	next   int
	mu     sync.Mutex
}

// floorHandler subscribes to subject once and returns the handler that
// takes each request's connection over.
func floorHandler(nc *nats.Conn) (http.Handler, error) {
	fs := &floorServer{}
	for range runtime.GOMAXPROCS(0) {
		sh := &floorShard{ch: make(chan []byte, 4096)}
		fs.shards = append(fs.shards, sh)
		go sh.run()
	}
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		wire := make([]byte, 0, len(m.Data)+8)
		wire = append(append(append(wire, "data: "...), m.Data...), "\n\n"...)
		for _, sh := range fs.shards {
			sh.ch <- wire
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return fs, nil
}

func (fs *floorServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = brw.Writer.Flush()
	const head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(head)); err != nil {
		conn.Close()
		return
	}
	fd := -1
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(u uintptr) { fd = int(u) })
		}
	}
	if fd < 0 {
		conn.Close()
		return
	}
	fs.mu.Lock()
	sh := fs.shards[fs.next%len(fs.shards)]
	fs.next++
	fs.mu.Unlock()
	sh.mu.Lock()
	sh.conns = append(sh.conns, floorConn{conn: conn, fd: fd})
	sh.mu.Unlock()
}

// run writes each event to every connection of the shard: one write(2)
// each. A socket with no room (never seen at the bench's loads) is
// finished with a blocking write, so that no subscriber misses an event;
// one that fails is dropped.
func (sh *floorShard) run() {
	var conns []floorConn
	for wire := range sh.ch {
		sh.mu.Lock()
		conns = append(conns[:0], sh.conns...)
		sh.mu.Unlock()
		var dead []net.Conn
		for _, c := range conns {
			n, err := syscall.Write(c.fd, wire)
			if err == nil && n == len(wire) {
				continue
			}
			if n < 0 {
				n = 0
			}
			if err == nil || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				if _, err := c.conn.Write(wire[n:]); err == nil {
					continue
				}
			}
			dead = append(dead, c.conn)
		}
		if len(dead) > 0 {
			sh.drop(dead)
		}
	}
}

// drop closes and forgets the connections in dead.
func (sh *floorShard) drop(dead []net.Conn) {
	gone := map[net.Conn]bool{}
	for _, c := range dead {
		gone[c] = true
		c.Close()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	kept := sh.conns[:0]
	for _, c := range sh.conns {
		if !gone[c.conn] {
			kept = append(kept, c)
		}
	}
	clear(sh.conns[len(kept):])
	sh.conns = kept
}
