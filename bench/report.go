package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// The section of BENCHMARKS.md this command owns; the rest of the file
// (other benchmarks' sections) is kept as it is.
const (
	markStart = "<!-- bench: ingest and decoder, written by `cd bench && go run .` -->"
	markEnd   = "<!-- bench: end of ingest and decoder -->"
)

// machine describes where the run happened.
type machine struct {
	commit, goVersion, cpu, kernel string
	cpus                           int
	loadStart, loadEnd             string
	start                          time.Time
}

func describeMachine(repo string) machine {
	m := machine{goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, cpus: runtime.NumCPU(), start: time.Now().UTC()}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			m.commit += " (with uncommitted changes)"
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.loadStart = loadAvg()
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// report is everything one run measured.
type report struct {
	m        machine
	quick    bool
	sizes    []int
	rounds   int
	inputs   []decodeInput
	decs     []namedDecoder
	dres     [][]decodeResult
	ingest   []ingestResult
	lat      []latencyResult
	rate     float64
	duration time.Duration
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("%s\n## Ingest and decoder\n\n", markStart)
	p("Command: `cd bench && go run .` (`-quick` for a smoke run of a few seconds).\n\n")
	p("Run on %s, commit %s, %s, %d CPUs (%s, Linux %s), load average %s at the start and %s at the end. ",
		r.m.start.Format("2006-01-02 15:04 UTC"), r.m.commit, r.m.goVersion, r.m.cpus, r.m.cpu, r.m.kernel, r.m.loadStart, r.m.loadEnd)
	p("The machine is shared with other work: absolute figures move between runs, so compare the ratios, which come from the same run.\n\n")
	if r.quick {
		p("**This is a -quick smoke run: inputs and runs are too small for the figures to mean anything.**\n\n")
	}

	if len(r.dres) > 0 {
		p("### Decoder\n\n")
		p("CPU time of the whole process (garbage collection included) to decode an in-memory stream of about %.2g MiB, in the fastest of %d rounds that take turns between the decoders, shown as input MB per CPU second. The fastest round, because load from other work on the machine only ever adds time, and it made rounds of one decoder differ by up to 1.7x; the ratios of the median rounds follow in parentheses. The targets are checked against the fastest rounds. Allocations per event at the margin (decoding the input twice over against once). Every decoder yields the same events (checked: count and a hash of every ID, type and data). `ssebridge (batch)` is `Decoder.ReadBatch` with 256-event batches released after use (memory reused); `ssebridge (Next)` hands out events that own their memory. r3labs/sse is its `EventStreamReader` plus its client's field loop (`processEvent`, unexported, copied). The targets compare with the fastest of go-sse, r3labs/sse and launchdarkly/eventsource.\n\n", float64(len(r.inputs[0].stream))/(1<<20), r.rounds)
		p("| input |")
		for _, d := range r.decs {
			p(" %s |", d.name)
		}
		p(" batch vs fastest library | Next vs fastest library | allocs/event batch / Next |\n|---|")
		for range r.decs {
			p("---|")
		}
		p("---|---|---|\n")
		for i, in := range r.inputs {
			p("| %s (%s, %d events) |", in.name, in.desc, in.events)
			fastest := -1
			for j, d := range r.decs {
				p(" %.0f |", r.dres[i][j].mbps)
				if d.lib && (fastest < 0 || r.dres[i][j].cpu < r.dres[i][fastest].cpu) {
					fastest = j
				}
			}
			batch, next := r.dres[i][0], r.dres[i][1]
			f := r.dres[i][fastest]
			p(" **%.1fx** (%.1fx) %s | %.1fx (%.1fx) | %.2f / %.2f |\n",
				f.cpu.Seconds()/batch.cpu.Seconds(), f.median.Seconds()/batch.median.Seconds(), r.decs[fastest].name,
				f.cpu.Seconds()/next.cpu.Seconds(), f.median.Seconds()/next.median.Seconds(), batch.allocsPer, next.allocsPer)
		}
		p("\n")
	}

	if len(r.ingest) > 0 {
		p("### Ingest\n\n")
		p("Each bridge is a separate process reading the loopback feed (~200 B events, as fast as it reads) and forwarding to brokers running in the harness process (nats-server with JetStream on disk, kfake). Measured on the bridge process alone, from the moment the feed accepted its connection until the broker held every event: events/s, CPU seconds per million events (utime+stime from /proc), peak RSS (VmHWM, start-up included). ssebridge is built from `cmd/ssebridge` and runs with its defaults (headers on, checkpoints in its data_dir). The hand-written bridges are the obvious code: a bufio.Scanner parser and one client call per event, no headers, except the two marked \"same headers\", which also parse id and event and set ssebridge's four SSE headers (SSE-Id, SSE-Event, SSE-Source, SSE-Received-At formatted per event) on a fresh nats.Msg per event, and in JetStream a Nats-Msg-Id of ssebridge's shape (hash/fnv over type and data): the ceiling nats.go's header encoding sets; the kafka-go one keeps the Writer's defaults except acks=all (as ssebridge) and hands it 100 events per WriteMessages call (its BatchSize), so that no batch waits out its one-second BatchTimeout. The feed, the brokers and the harness share the machine's CPUs with the bridge. CPU time comes in 10 ms ticks: coarse for the smallest runs. `-perf DIR` records ssebridge's runs with perf. Core NATS counts the messages the server received; JetStream the messages stored in the stream; Kafka the partition's end offset, and the records are read back to check that every event is there once, in order.\n\n")
		p("| scenario | bridge | events | events/s | CPU s per M events | peak RSS MiB | ssebridge events/s vs this | |\n|---|---|---|---|---|---|---|---|\n")
		for _, res := range r.ingest {
			if res.err != nil {
				p("| %s | %s | %d | failed: %s | | | | |\n", res.c.scenario, res.c.name, res.events, mdEscape(res.err.Error()))
				continue
			}
			ratio := ""
			if res.c.role != "" {
				for _, o := range r.ingest {
					if o.c.role == "" && o.c.scenario == res.c.scenario && o.events == res.events && o.err == nil {
						ratio = fmt.Sprintf("%.2fx", o.eps()/res.eps())
					}
				}
			}
			p("| %s | %s | %d | %.0f | %.2f | %d | %s | %s |\n", res.c.scenario, res.c.name, res.events, res.eps(), res.cpuPerM(), res.hwm>>20, ratio, res.note)
		}
		p("\n")
	}
	if len(r.lat) > 0 {
		p("### Latency at a steady rate\n\n")
		p("The feed sends %.0f events/s for %v, each carrying the time it was written. Core NATS: until a subscriber in the harness received the message. JetStream: until the server stored it (the stored message's timestamp, read back after the run). Kafka: until a consumer in the harness fetched the record (kfake keeps no append time, so this is an upper bound of the time to store it). The sync JetStream publisher cannot keep this rate and is left out.\n\n", r.rate, r.duration)
		p("| scenario | bridge | events | p50 | p99 | max |\n|---|---|---|---|---|---|\n")
		for _, l := range r.lat {
			if l.err != nil {
				p("| %s | %s | %d | failed: %s | | |\n", l.c.scenario, l.c.name, l.events, mdEscape(l.err.Error()))
				continue
			}
			p("| %s | %s | %d | %s | %s | %s |\n", l.c.scenario, l.c.name, l.events, ms(l.p50), ms(l.p99), ms(l.max))
		}
		p("\n")
	}
	r.targets(p)
	p("%s\n", markEnd)
	return b.String()
}

// targets checks the figures of this run against the targets of issue 15.
func (r *report) targets(p func(string, ...any)) {
	p("### Against the targets (issue 15)\n\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	if len(r.dres) > 0 {
		for _, api := range []struct {
			name string
			col  int
		}{{"ReadBatch", 0}, {"Next", 1}} {
			var parts []string
			ok4, ok2, okAlloc := true, true, true
			for i, in := range r.inputs {
				fastest := -1
				for j, d := range r.decs {
					if d.lib && (fastest < 0 || r.dres[i][j].cpu < r.dres[i][fastest].cpu) {
						fastest = j
					}
				}
				ours := r.dres[i][api.col]
				ratio := r.dres[i][fastest].cpu.Seconds() / ours.cpu.Seconds()
				parts = append(parts, fmt.Sprintf("%s %.1fx (median %.1fx)", in.name, ratio, r.dres[i][fastest].median.Seconds()/ours.median.Seconds()))
				if in.name == "nonascii" {
					ok2 = ok2 && ratio >= 2
				} else {
					ok4 = ok4 && ratio >= 4
				}
				okAlloc = okAlloc && ours.allocsPer <= 1
			}
			p("- Decoder, %s, against the fastest library: %s. At least 4x on the first four: %s; at least 2x on non-ASCII: %s; at most one allocation per event (marginal): %s.\n",
				api.name, strings.Join(parts, ", "), verdict(ok4), verdict(ok2), verdict(okAlloc))
		}
	}
	find := func(sc, role string, n int) (ingestResult, bool) {
		for _, x := range r.ingest {
			if x.c.scenario == sc && x.c.role == role && x.events == n && x.err == nil {
				return x, true
			}
		}
		return ingestResult{}, false
	}
	for _, n := range r.sizes {
		ours, ok := find(scCore, "", n)
		hand, ok2 := find(scCore, roleCore, n)
		if ok && ok2 {
			p("- Core NATS, %d events: %.0f events/s against the hand-written bridge's %.0f (%.2fx; never slower: %s; at least 300k/s: %s), %.2f CPU s per million events (at most 3: %s).",
				n, ours.eps(), hand.eps(), ours.eps()/hand.eps(), verdict(ours.eps() >= hand.eps()), verdict(ours.eps() >= 300_000), ours.cpuPerM(), verdict(ours.cpuPerM() <= 3))
			if hdr, ok := find(scCore, roleCoreHdr, n); ok {
				// Not a target: how far the library's own header
				// encoding puts the ceiling.
				p(" Against the same bridge setting the same four headers (nc.PublishMsg): %.0f events/s, %.2f CPU s per million (%.2fx).",
					hdr.eps(), hdr.cpuPerM(), ours.eps()/hdr.eps())
			}
			p("\n")
		}
	}
	for _, n := range r.sizes {
		if ours, ok := find(scJS, "", n); ok {
			p("- JetStream, %d events: %.0f events/s (at least 100k/s: %s).", n, ours.eps(), verdict(ours.eps() >= 100_000))
			for _, b := range []struct{ role, name string }{{roleJSAsync, "async js.PublishAsync"}, {roleJSAsyncHdr, "async with the same headers"}} {
				if x, ok := find(scJS, b.role, n); ok {
					p(" Hand-written %s: %.0f events/s (%.2fx).", b.name, x.eps(), ours.eps()/x.eps())
				}
			}
			p("\n")
		}
	}
	for _, l := range r.lat {
		if l.c.scenario == scJS && l.c.role == "" && l.err == nil {
			p("- JetStream at a steady %.0f events/s: p99 feed-to-stored %s (at most 20 ms: %s).\n", l.rate, ms(l.p99), verdict(l.p99 <= 20*time.Millisecond))
		}
	}
	for _, n := range r.sizes {
		if ours, ok := find(scKafka, "", n); ok {
			p("- Kafka, %d events: %.0f events/s, %s (at least 100k/s: %s).\n", n, ours.eps(), ours.note, verdict(ours.eps() >= 100_000))
		}
	}
	p("\n")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", d.Seconds()*1e3) }

func mdEscape(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// writeReport replaces this command's section of path, or adds it at the
// top, keeping every other section.
func writeReport(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	switch i, j := strings.Index(s, markStart), strings.Index(s, markEnd); {
	case i >= 0 && j > i:
		s = s[:i] + section + strings.TrimPrefix(s[j+len(markEnd):], "\n")
	case s == "":
		s = "# Benchmarks\n\n" + section
	default:
		// After the title, if there is one.
		if k := strings.Index(s, "\n\n"); strings.HasPrefix(s, "# ") && k > 0 {
			s = s[:k+2] + section + "\n" + s[k+2:]
		} else {
			s = section + "\n" + s
		}
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
