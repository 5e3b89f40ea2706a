package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ssebridge/ssebridge/internal/tlsconf"
	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sources"
	"github.com/ssebridge/ssebridge/sse"
)

func init() {
	commands["tail"] = command{
		summary: "print an SSE feed as JSON lines (reconnecting like a source)",
		run:     tailCommand,
	}
}

const tailDescription = `Prints every event of the SSE feed at URL as one JSON line
{"id":"...","event":"...","data":"..."} (id is the last event ID at dispatch,
event the type). Without -once it reconnects like a pipeline source: with
Last-Event-ID, honouring the server's retry field, with exponential backoff.
A 204 answer ends it with status 0. Connection errors go to stderr, or with
-errors to stdout instead, as JSON lines in order with the events.`

// headerFlags collects repeated -H 'Name: value' flags.
type headerFlags struct{ h http.Header }

func (f *headerFlags) String() string { return "" }

func (f *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("want 'Name: value', got %q", v)
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

func tailCommand(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return tail(ctx, args, stdout, stderr)
}

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tail", "[flags] URL", tailDescription, stderr)
	headers := &headerFlags{h: http.Header{}}
	fs.Var(headers, "H", "request header `'Name: value'` (repeatable)")
	method := fs.String("X", "", "request `method` (default GET, POST with -d)")
	body := fs.String("d", "", "request `body`, sent again on every reconnection")
	lastID := fs.String("last-event-id", "", "resume after this event `ID`")
	limit := fs.Int("n", 0, "exit 0 after `N` events (0: no limit)")
	once := fs.Bool("once", false, "do not reconnect: exit 0 at the end of the stream, 1 on an error")
	retry := fs.Duration("retry", sources.DefaultRetryInitial, "initial reconnection `delay` until the server sends retry (0 allowed)")
	retryMax := fs.Duration("retry-max", sources.DefaultRetryMax, "maximum reconnection `delay`")
	idle := fs.Duration("idle-timeout", 0, "reconnect after this long without a byte (0: never)")
	maxSize := fs.Int("max-event-size", sse.DefaultMaxEventSize, "largest event in `bytes`; larger ones are skipped")
	comments := fs.Bool("comments", false, `also print comment lines as {"comment":"..."}`)
	showErrors := fs.Bool("errors", false, `print connection errors as {"error":"..."} lines on stdout, in order with the events, instead of on stderr`)
	insecure := fs.Bool("insecure", false, "do not verify the server's TLS certificate")
	// Flags may also follow the URL: ssebridge tail URL -n 5.
	var url string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		if url != "" {
			fmt.Fprintf(stderr, "ssebridge tail: unexpected argument %q\n", fs.Arg(0))
			return 2
		}
		url, rest = fs.Arg(0), fs.Args()[1:]
	}
	if url == "" {
		fmt.Fprintln(stderr, "ssebridge tail: URL is required")
		fs.Usage()
		return 2
	}
	if *limit < 0 {
		fmt.Fprintln(stderr, "ssebridge tail: -n must not be negative")
		return 2
	}
	if *method == "" && *body != "" {
		*method = http.MethodPost
	}
	// The worker owns Last-Event-ID: it must send the last delivered ID on
	// every reconnect, so it drops the header from -H. Someone who writes
	// -H 'Last-Event-ID: x' means "start after x"; -last-event-id says so
	// explicitly and wins when both are given.
	if ids := headers.h.Values("Last-Event-ID"); len(ids) > 0 {
		if *lastID == "" {
			*lastID = ids[len(ids)-1]
		}
		headers.h.Del("Last-Event-ID")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &lineWriter{w: stdout, limit: *limit, reached: cancel}
	// reported is the last error shown as a JSON line: the one Run may
	// return with -once must not be shown a second time on stderr.
	var reported atomic.Pointer[error]
	cfg := sources.Config{
		Name:         tailName,
		URL:          url,
		Method:       strings.ToUpper(*method),
		Header:       headers.h,
		Body:         *body,
		RetryInitial: *retry,
		RetryMax:     *retryMax,
		IdleTimeout:  *idle,
		MaxEventSize: *maxSize,
		QueueSize:    64,
		BatchSize:    64,
		LastEventID:  *lastID,
		Once:         *once,
		OnError: func(err error) {
			if errors.Is(err, sources.ErrServerStopped) {
				return // not an error: the server is done
			}
			switch {
			case *showErrors:
				out.print(map[string]string{"error": err.Error()})
				reported.Store(&err)
			case !*once: // with -once the error is reported on exit
				fmt.Fprintf(stderr, "ssebridge tail: %s (reconnecting)\n", aboutURL(url, err))
			}
		},
	}
	if *insecure {
		cfg.TLS, _ = tlsconf.Build(&tlsconf.Config{InsecureSkipVerify: true}) // no files: cannot fail
	}
	if *comments {
		cfg.OnComment = func(c string) { out.print(map[string]string{"comment": c}) }
	}
	// The source's own rules, reported under the flags that set them.
	bad := false
	cfg.Check(func(field, msg string) {
		fmt.Fprintf(stderr, "ssebridge tail: %s: %s\n", tailFlag(field), msg)
		bad = true
	})
	if bad {
		return 2
	}
	w, err := sources.New(cfg, out, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ssebridge tail: %s\n", aboutURL(url, err))
		return 2
	}
	err = w.Run(ctx)
	if werr := out.failed(); werr != nil {
		fmt.Fprintf(stderr, "ssebridge tail: writing output: %v\n", werr)
		return 1
	}
	if err != nil && !errors.Is(err, sources.ErrServerStopped) {
		if last := reported.Load(); last == nil || !errors.Is(err, *last) {
			fmt.Fprintf(stderr, "ssebridge tail: %s\n", aboutURL(url, err))
		}
		return 1
	}
	return 0
}

// tailFlags name the flag that sets each field of sources.Config that
// sources.Config.Check may complain about.
var tailFlags = map[string]string{
	"URL":          "URL",
	"Method":       "-X",
	"LastEventID":  "-last-event-id",
	"RetryInitial": "-retry",
	"RetryMax":     "-retry-max",
	"IdleTimeout":  "-idle-timeout",
	"MaxEventSize": "-max-event-size",
}

// tailFlag is what the user typed to set a field of sources.Config.
func tailFlag(field string) string {
	if name, ok := strings.CutPrefix(field, sources.HeaderKey); ok {
		return "-H " + name
	}
	if f, ok := tailFlags[field]; ok {
		return f
	}
	return field
}

// tailName names tail's source worker, for its metrics and the prefix
// its errors carry; aboutURL puts the URL in that prefix's place.
const tailName = "tail"

// aboutURL words an error of tail's source for its user, who knows the
// URL they typed, not the worker's name: "URL: cause". The source wraps
// its errors as `source "tail": ...`, and net/http names the method and
// URL again (`Get "URL": ...`); both go.
func aboutURL(rawURL string, err error) string {
	msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("source %q: ", tailName))
	var ue *neturl.Error
	if errors.As(err, &ue) && ue.URL == rawURL && ue.Err != nil {
		msg = strings.Replace(msg, ue.Error(), ue.Err.Error(), 1)
	}
	if strings.HasPrefix(msg, rawURL) {
		return msg
	}
	return rawURL + ": " + msg
}

// tailEvent is one output line; the field order is the documented one.
type tailEvent struct {
	ID    string `json:"id"`
	Event string `json:"event"`
	Data  string `json:"data"`
}

// lineWriter is the sink of tail: it prints each event as a JSON line, and
// the comment and error lines the hooks hand it, in the order they come
// (all from the worker's delivering goroutine).
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	limit   int    // events to print, 0 for no limit
	n       int    // events printed
	reached func() // called once the limit is reached or output fails
	err     error
	buf     bytes.Buffer
}

func (l *lineWriter) Write(ctx context.Context, msgs []sinks.Message) (int, error) {
	for _, m := range msgs {
		l.print(tailEvent{ID: m.Event.ID, Event: m.Event.Type, Data: string(m.Event.Data)})
	}
	return len(msgs), nil
}

func (l *lineWriter) Close() error { return nil }

func (l *lineWriter) print(v any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || (l.limit > 0 && l.n >= l.limit) {
		return
	}
	// One Write per line, so that a reader never sees half a line.
	l.buf.Reset()
	enc := json.NewEncoder(&l.buf)
	enc.SetEscapeHTML(false) // for terminals and programs, not web pages
	err := enc.Encode(v)
	if err == nil {
		_, err = l.w.Write(l.buf.Bytes())
	}
	if err != nil {
		l.err = err
		l.reached()
		return
	}
	if _, ok := v.(tailEvent); ok {
		l.n++
		if l.limit > 0 && l.n == l.limit {
			l.reached()
		}
	}
}

func (l *lineWriter) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
