// Command chaos runs ssebridge as a separate process against a real
// nats-server process, a kfake cluster and a replaying test feed, injects
// one fault per row, counts every event from the feed to the broker and to
// a reverse subscriber by sequence, and writes the fault table
// (RELIABILITY.md).
//
//	go run ./internal/chaos            # the full table, a few minutes
//	go run ./internal/chaos -quick     # a few seconds per row
//	go run ./internal/chaos -rows bridge-kill,repeating-ids -out /tmp/r.md
//
// It exits 1 when a row lost an event (or could not run), 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ssebridge/ssebridge/internal/testbin"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags select.
type config struct {
	quick bool
	rows  []string
	out   string
	keep  bool
	seed  uint64
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var rowList string
	fs.BoolVar(&c.quick, "quick", false, "every row in a few seconds (fewer events, shorter outages, fewer kills)")
	fs.StringVar(&rowList, "rows", "", "comma-separated rows to run (default: all); -list prints them")
	fs.StringVar(&c.out, "out", "RELIABILITY.md", "where to write the table (relative to the module root unless absolute); - for stdout")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, data) instead of removing it")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed (0: from the clock)")
	list := fs.Bool("list", false, "list the rows and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *list {
		for _, r := range rows() {
			fmt.Fprintf(stderr, "%-32s %s\n", r.key, r.fault)
		}
		return c, flag.ErrHelp
	}
	known := map[string]bool{}
	for _, r := range rows() {
		known[r.key] = true
	}
	for _, k := range strings.Split(rowList, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !known[k] {
			return c, fmt.Errorf("unknown row %q (see -list)", k)
		}
		c.rows = append(c.rows, k)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer killAllProcs()
	results, env, err := runTable(ctx, c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	md := report(results, env)
	if c.out == "-" {
		fmt.Fprint(stdout, md)
	} else {
		out := c.out
		if !filepath.IsAbs(out) {
			if root, err := testbin.ModuleRoot(); err == nil {
				out = filepath.Join(root, out)
			}
		}
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
		fmt.Fprintln(stderr, "chaos: wrote", out)
	}
	bad := 0
	for _, r := range results {
		if !r.ok() {
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "chaos: %d of %d lines FAILED\n", bad, len(results))
		return 1
	}
	return 0
}

// runEnv describes the run for the report.
type runEnv struct {
	p       params
	seed    uint64
	commit  string
	machine string
	user    string
	started time.Time
	took    time.Duration
	work    string
}

// runTable builds the binaries and runs the selected rows.
func runTable(ctx context.Context, c config, log io.Writer) ([]*result, runEnv, error) {
	p := fullParams()
	if c.quick {
		p = quickParams()
	}
	env := runEnv{p: p, seed: c.seed, commit: commit(ctx), machine: machine(), started: time.Now()}
	work, err := os.MkdirTemp("", "ssebridge-chaos-")
	if err != nil {
		return nil, env, fmt.Errorf("work dir: %w", err)
	}
	env.work = work
	if !c.keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Fprintln(log, "chaos: work directory", work)
	}
	// The bridge may run as another user: it must reach its binary and files.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, env, fmt.Errorf("work dir: %w", err)
	}
	fmt.Fprintln(log, "chaos: building ssebridge and nats-server")
	bins, err := buildBinaries(work)
	if err != nil {
		return nil, env, err
	}
	h := &harness{bins: bins, work: work, seed: c.seed}
	if lf, ok := log.(*os.File); ok {
		h.log = lf
	} else {
		h.log = os.Stderr
	}
	h.cred, env.user = bridgeUser()
	sel := c.rows
	if len(sel) == 0 {
		for _, r := range rows() {
			sel = append(sel, r.key)
		}
	}
	want := map[string]bool{}
	for _, k := range sel {
		want[k] = true
	}
	var results []*result
	for _, rw := range rows() {
		if !want[rw.key] || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(log, "chaos: row %s (%s)\n", rw.key, strings.Join(rw.sinks, ", "))
		res := h.runRow(ctx, rw, p)
		for _, r := range res {
			status := "ok"
			if !r.ok() {
				status = "FAILED"
			}
			if r.err != nil {
				status += ": " + r.err.Error()
			}
			fmt.Fprintf(log, "chaos:   %-10s sent %d, lost %d/%d, dup %d/%d, ooo %d/%d, recovery %s (%d/%d), rss %d MiB: %s\n",
				r.sink, r.sent, r.broker.Lost, r.sub.Lost, r.broker.Dup, r.sub.Dup, r.broker.OOO, r.sub.OOO,
				r.recovery.Round(time.Millisecond), r.recovered, r.faults, r.rss>>20, status)
			for _, n := range r.notes {
				fmt.Fprintf(log, "chaos:     - %s\n", n)
			}
		}
		results = append(results, res...)
		killAllProcs()
	}
	env.took = time.Since(env.started)
	if ctx.Err() != nil {
		return results, env, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return results, env, nil
}

// bridgeUser is the user ssebridge runs as: when the harness is root, the
// unprivileged nobody, so that permission bits bind it.
func bridgeUser() (*syscall.Credential, string) {
	if os.Geteuid() != 0 {
		return nil, fmt.Sprintf("uid %d (the harness's own user)", os.Geteuid())
	}
	return &syscall.Credential{Uid: unprivileged, Gid: unprivileged, NoSetGroups: false},
		fmt.Sprintf("uid %d (nobody; the harness runs as root and starts it with a dropped credential)", unprivileged)
}
