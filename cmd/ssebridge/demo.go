package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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

func demoCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP `address` for the status page, the feed and the reverse stream")
	dataDir := fs.String("data-dir", "", "`directory` for JetStream and checkpoints (default: a temporary directory removed on exit)")
	burst := fs.Int("burst", 0, "send this many events per tick instead of one (load mode)")
	interval := fs.Duration("interval", 0, "time between ticks (default 1s)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *burst < 0 || *interval < 0 {
		fmt.Fprintln(stderr, "usage: ssebridge demo [-addr HOST:PORT] [-data-dir DIR] [-burst N]")
		return 2
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
	d, err := demo.New(demo.Options{Addr: *addr, DataDir: dir, Burst: *burst, Interval: *interval, Logger: log})
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
		d.PrintURLs(stdout, dir)
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
