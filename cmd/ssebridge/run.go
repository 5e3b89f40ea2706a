package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ssebridge/ssebridge/bridge"
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/logging"
)

func init() {
	commands["run"] = command{
		summary: "run the pipelines and streams of a config until SIGINT/SIGTERM",
		run:     runCommand,
	}
}

func runCommand(args []string, _, stderr io.Writer) int {
	fs := newFlags("run", "-config FILE",
		"Runs the pipelines and streams of FILE until SIGINT or SIGTERM, then drains\nand exits 0; SIGHUP reloads FILE.", stderr)
	path := fs.String("config", "", "configuration `FILE` (YAML, required)")
	if code, done := parseSubcommandFlags(fs, args); done {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "ssebridge run: -config is required")
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runBridge(ctx, *path, hup, stderr)
}

// runBridge loads path and runs the bridge until ctx is done, reloading the
// file on every hup. It returns the exit code.
func runBridge(ctx context.Context, path string, hup <-chan os.Signal, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log, level, err := logging.New(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	b, err := bridge.New(cfg, bridge.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	done := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for {
			select {
			case <-done:
				return
			case <-hup:
				reload(b, path, level, log)
			}
		}
	}()
	err = b.Run(ctx)
	close(done)
	<-reloaded
	if err != nil {
		log.Error("ssebridge stopped with an error", "err", err)
		return 1
	}
	return 0
}

// reload applies the file again; a file that does not load keeps the
// running configuration.
func reload(b *bridge.Bridge, path string, level *slog.LevelVar, log *slog.Logger) {
	log.Info("SIGHUP: reloading config", "file", path)
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("reload: config has errors, keeping the running one", "err", err)
		return
	}
	if err := logging.SetLevel(level, cfg.Log.Level); err != nil {
		log.Warn("reload: log level", "err", err)
	}
	if err := b.Reload(cfg); err != nil {
		log.Error("reload failed", "err", err)
	}
}
