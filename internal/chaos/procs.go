package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ssebridge/ssebridge/internal/testbin"
)

// binaries are the programs the harness runs as separate processes.
type binaries struct {
	bridge string // ssebridge
	nats   string // nats-server
}

// buildBinaries copies ssebridge and nats-server, built once by
// internal/testbin (or prebuilt in $SSEBRIDGE_TEST_BIN), into dir, where
// the unprivileged bridge user may run them.
func buildBinaries(dir string) (binaries, error) {
	b := binaries{bridge: filepath.Join(dir, "ssebridge"), nats: filepath.Join(dir, "nats-server")}
	for _, job := range []struct {
		get func() (string, error)
		dst string
	}{{testbin.SSEBridge, b.bridge}, {testbin.NATSServer, b.nats}} {
		src, err := job.get()
		if err != nil {
			return b, err
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return b, fmt.Errorf("read %s: %w", src, err)
		}
		if err := os.WriteFile(job.dst, data, 0o755); err != nil {
			return b, fmt.Errorf("write %s: %w", job.dst, err)
		}
	}
	return b, nil
}

// A proc is one child process in its own process group.
type proc struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	start time.Time

	mu     sync.Mutex
	exit   int // exit code, -1 when killed by a signal
	signal string
	hwm    int64 // peak RSS seen, bytes
}

// reg holds every live child, so that an interrupted harness kills them all.
var reg = struct {
	sync.Mutex
	m map[*proc]struct{}
}{m: map[*proc]struct{}{}}

func killAllProcs() {
	reg.Lock()
	ps := make([]*proc, 0, len(reg.m))
	for p := range reg.m {
		ps = append(ps, p)
	}
	reg.Unlock()
	for _, p := range ps {
		p.kill()
	}
}

// startProc starts bin with args, its output appended to logPath. cred, when
// set, runs it as that user.
func startProc(name, logPath string, cred *syscall.Credential, env []string, bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	fmt.Fprintf(lf, "\n==== %s start %s\n", name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	// Own process group (killed as a whole) and a parent-death signal, so
	// that nothing survives the harness.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), start: time.Now()}
	reg.Lock()
	reg.m[p] = struct{}{}
	reg.Unlock()
	go func() {
		err := cmd.Wait()
		lf.Close()
		p.mu.Lock()
		p.exit = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.signal = ws.Signal().String()
		}
		_ = err
		p.mu.Unlock()
		reg.Lock()
		delete(reg.m, p)
		reg.Unlock()
		close(p.done)
	}()
	go p.sampleRSS()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// sampleRSS keeps the largest VmHWM of the process seen while it lives.
func (p *proc) sampleRSS() {
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		p.readHWM()
		select {
		case <-p.done:
			return
		case <-tk.C:
		}
	}
}

func (p *proc) readHWM() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				if err == nil {
					p.mu.Lock()
					p.hwm = max(p.hwm, kb*1024)
					p.mu.Unlock()
				}
			}
		}
	}
}

func (p *proc) peakRSS() int64 {
	if p.alive() {
		p.readHWM()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hwm
}

// sig sends s to the process group.
func (p *proc) sig(s syscall.Signal) {
	if p.alive() {
		if s == syscall.SIGKILL {
			p.readHWM()
		}
		_ = syscall.Kill(-p.pid(), s)
	}
}

// kill SIGKILLs the group and waits for the exit.
func (p *proc) kill() {
	p.sig(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// wait waits at most d for the exit; ok is false on timeout.
func (p *proc) wait(d time.Duration) (code int, signal string, ok bool) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exit, p.signal, true
	case <-time.After(d):
		return 0, "", false
	}
}

// freePort returns a loopback TCP port free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections or d passed.
func waitTCP(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	return fmt.Errorf("%s not reachable within %s", addr, d)
}
