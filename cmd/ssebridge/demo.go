package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ssebridge/ssebridge/internal/demo"
	"github.com/ssebridge/ssebridge/internal/logging"
)

func init() {
	commands["demo"] = command{
		summary: "run a self-contained demo: embedded NATS, a ticking feed, a pipeline and a reverse stream",
		run:     demoCommand,
	}
}

const demoDescription = `Runs the whole product on this machine with nothing installed: an embedded
NATS server with JetStream, a local SSE feed ticking every second, a pipeline
ingesting it and a reverse stream serving it back, all on one HTTP address.
Prints the URLs to open; Ctrl-C drains and exits 0.`

func demoCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "[flags]", demoDescription, stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP `address` for the status page, the feed and the reverse stream")
	dataDir := fs.String("data-dir", "", "`directory` for JetStream and checkpoints (default: a temporary directory removed on exit)")
	burst := fs.Int("burst", 0, "send this many events per tick instead of one (load mode)")
	interval := fs.Duration("interval", 0, "time between ticks (default 1s)")
	cors := fs.String("cors", "*", "`origins` (comma-separated) whose pages may read the reverse stream; * for any, \"\" for none")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if code, done := parseSubcommandFlags(fs, args); done {
		return code
	}
	if *burst < 0 || *interval < 0 {
		fmt.Fprintln(stderr, "ssebridge demo: -burst and -interval must not be negative")
		fs.Usage()
		return 2
	}
	var origins []string
	for _, o := range strings.Split(*cors, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	log, _, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "ssebridge demo:", err)
		return 2
	}
	dir := *dataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "ssebridge-demo-")
		if err != nil {
			fmt.Fprintln(stderr, "ssebridge demo:", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := demo.New(demo.Options{Addr: *addr, DataDir: dir, Burst: *burst, Interval: *interval, CORS: origins, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "ssebridge demo:", err)
		return 1
	}
	printed := make(chan struct{})
	// The wait for readiness ends with Run too: a demo whose bridge failed
	// to start must not print URLs for it, 10 s later, after the error.
	wctx, cancelWait := context.WithTimeout(ctx, 10*time.Second)
	go func() {
		defer close(printed)
		// Print once the pipeline is up, so the first curl finds the
		// stream; a slow start still gets the URLs after a few seconds.
		if err := d.WaitReady(wctx); err != nil && !errors.Is(wctx.Err(), context.DeadlineExceeded) {
			return
		}
		d.PrintURLs(stdout, dir, selfCommand(os.Args[0]))
	}()
	defer func() {
		cancelWait()
		<-printed
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "ssebridge demo:", err)
		return 1
	}
	return 0
}

// selfCommand is how to run ssebridge again as it was started, given
// os.Args[0]. After `go run ./cmd/ssebridge`, the binary sits in a go-build
// directory (a temporary one, or the build cache) and "ssebridge" is not a
// command: the answer is `go run` with the package as the user likely
// typed it. Otherwise it is the name the user typed ("./ssebridge", or
// "ssebridge" when found on PATH).
func selfCommand(arg0 string) string {
	if !builtByGoRun(arg0) {
		return arg0
	}
	if _, err := os.Stat(filepath.Join("cmd", "ssebridge", "main.go")); err == nil {
		return "go run ./cmd/ssebridge"
	}
	if wd, err := os.Getwd(); err == nil && filepath.Base(wd) == "ssebridge" && filepath.Base(filepath.Dir(wd)) == "cmd" {
		return "go run ."
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Path != "" {
		return "go run " + info.Path
	}
	return "go run github.com/ssebridge/ssebridge/cmd/ssebridge"
}

// builtByGoRun reports whether path is a binary `go run` built: it lives
// under a directory named go-build... (/tmp/go-build123/b001/exe/ssebridge,
// or $GOCACHE, ~/.cache/go-build/ab/...-d/ssebridge, where go run caches it).
func builtByGoRun(path string) bool {
	for _, part := range strings.Split(filepath.ToSlash(filepath.Dir(path)), "/") {
		if strings.HasPrefix(part, "go-build") {
			return true
		}
	}
	return false
}
