// Command bench measures ssebridge's ingest speed against hand-written
// bridges and the Go SSE libraries, and writes BENCHMARKS.md.
//
// Run it from this directory: go run . (a few minutes) or go run . -quick
// (a smoke run of a few seconds that writes no report unless -out is
// given). It starts its own loopback feed, nats-server and kfake, builds
// ssebridge from ../cmd/ssebridge, and runs the hand-written baselines as
// roles of its own binary, so that every bridge is measured as a process
// of its own.
//
// It lives in a module of its own so that its baselines (other SSE
// libraries, extra clients) never enter the product's module.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		quick     = flag.Bool("quick", false, "a smoke run of a few seconds; writes no report unless -out is set")
		out       = flag.String("out", "", "report `file` (default ../BENCHMARKS.md for a full run; none for -quick or a partial run)")
		repo      = flag.String("repo", "..", "repository root, to build cmd/ssebridge from")
		only      = flag.String("only", "", "run only `part`: decode, ingest or latency")
		perfDir   = flag.String("perf", "", "record ssebridge's ingest runs with perf into `dir`")
		sizes     = flag.String("sizes", "", "comma-separated event counts of the ingest runs, instead of the defaults")
		decSize   = flag.Int("decode-size", 0, "`bytes` of each decoder input, instead of 6 MiB")
		match     = flag.String("match", "", "run only the bridges whose \"scenario/name\" contains `text`")
		role      = flag.String("role", "", "internal: run a hand-written bridge")
		feedURL   = flag.String("feed", "", "internal: feed URL of -role")
		natsURL   = flag.String("nats", "", "internal: NATS URL of -role")
		kafkaAddr = flag.String("kafka", "", "internal: Kafka address of -role")
	)
	flag.Parse()
	if *role != "" {
		if err := runRole(*role, *feedURL, *natsURL, *kafkaAddr); err != nil {
			fmt.Fprintln(os.Stderr, "bench -role "+*role+":", err)
			os.Exit(1)
		}
		return
	}
	if *out == "" && !*quick && *only == "" && *match == "" && *sizes == "" && *decSize == 0 {
		*out = filepath.Join(*repo, "BENCHMARKS.md")
	}
	var ns []int
	for f := range strings.SplitSeq(*sizes, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	if err := run(*quick, *only, *repo, *out, *perfDir, *match, ns, *decSize); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(quick bool, only, repo, out, perfDir, match string, sizes []int, decSize int) error {
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	rep := &report{m: describeMachine(repo), quick: quick}
	decodeSize, rounds := 6<<20, 15
	rep.sizes = []int{30_000, 100_000, 300_000}
	rep.rate, rep.duration = 10_000, 5*time.Second
	if quick {
		decodeSize, rounds = 256<<10, 2
		rep.sizes = []int{1000}
		rep.duration = 300 * time.Millisecond
	}
	if sizes != nil {
		rep.sizes = sizes
	}
	if decSize > 0 {
		decodeSize = decSize
	}
	var errs []error
	if only == "" || only == "decode" {
		var err error
		rep.rounds = rounds
		rep.inputs, rep.decs, rep.dres, err = runDecode(decodeSize, rounds, logf)
		errs = append(errs, err)
	}
	if only == "" || only == "ingest" || only == "latency" {
		dir, err := os.MkdirTemp("", "ssebridge-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		h := &harness{dir: dir, logf: logf, perfDir: perfDir, match: match}
		if h.self, err = os.Executable(); err != nil {
			return err
		}
		if h.ssebridge, err = buildSSEBridge(repo, dir); err != nil {
			return err
		}
		if h.feed, err = startFeed(); err != nil {
			return err
		}
		defer h.feed.close()
		if h.br, err = startBrokers(dir); err != nil {
			return err
		}
		defer h.br.close()
		if only != "latency" {
			rep.ingest = h.throughput(rep.sizes)
			for _, r := range rep.ingest {
				errs = append(errs, r.err)
			}
		}
		if only != "ingest" {
			rep.lat = h.latency(rep.rate, rep.duration)
			for _, l := range rep.lat {
				errs = append(errs, l.err)
			}
		}
	}
	rep.m.loadEnd = loadAvg()
	if out != "" {
		if err := writeReport(out, rep.markdown()); err != nil {
			return err
		}
		logf("wrote %s", out)
	}
	return errors.Join(errs...)
}
