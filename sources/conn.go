package sources

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// One HTTP request to the feed: building it, checking the answer, and the
// body wrappers (gzip, idle timer) between the socket and the decoder.

func (w *Worker) newRequest(ctx context.Context, lastID string) (*http.Request, error) {
	var body io.Reader
	if w.cfg.Body != "" {
		body = strings.NewReader(w.cfg.Body) // also sets GetBody, for redirects
	}
	req, err := http.NewRequestWithContext(ctx, w.cfg.Method, w.cfg.URL, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	req.Header = w.cfg.Header.Clone()
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/event-stream")
	}
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	// net/http ignores a Host in Header and sends the URL's host: a
	// configured Host (a virtual host reached by address) goes in req.Host.
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.Header.Del("Host")
	req.Header.Del("Last-Event-ID")
	switch {
	case lastID == "":
	case hasCTL(lastID):
		// The feed sent an id with a control character: valid SSE, which
		// a browser would send back, but net/http refuses the header and
		// would fail every attempt. Resuming without it may replay or skip
		// what the feed sent meanwhile; never resuming would stop the
		// pipeline for good.
		w.log.Warn("last event id holds a control character that HTTP cannot carry; reconnecting without Last-Event-ID",
			"last_event_id", strconv.Quote(lastID))
	default:
		req.Header.Set("Last-Event-ID", lastID)
	}
	return req, nil
}

// checkResponse accepts a 2xx (but 204) text/event-stream answer.
func checkResponse(resp *http.Response) error {
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return ErrServerStopped
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// net/http hands back a redirect it could not follow, which is
		// one without a Location header.
		return fmt.Errorf("%w: status %s without a Location header", ErrBadRedirect, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &StatusError{Code: resp.StatusCode, Status: resp.Status,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	ct := resp.Header.Get("Content-Type")
	// Only the media type matters (the stream is UTF-8 whatever the
	// charset says); ParseMediaType still returns it when a parameter is
	// malformed, which browsers ignore too.
	mt, _, err := mime.ParseMediaType(ct)
	if (err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter)) || mt != "text/event-stream" {
		return fmt.Errorf("%w: got %q", ErrContentType, ct)
	}
	// net/http decodes gzip itself (and removes the header) unless the
	// request set Accept-Encoding; then the encoding is ours to undo.
	if ce := strings.TrimSpace(resp.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") && !isGzip(resp) {
		return fmt.Errorf("%w: %q (only gzip is decoded; remove Accept-Encoding from the headers)", ErrContentEncoding, ce)
	}
	return nil
}

// isGzip reports whether resp's body is still gzip-compressed.
func isGzip(resp *http.Response) bool {
	ce := strings.TrimSpace(resp.Header.Get("Content-Encoding"))
	return !resp.Uncompressed && (strings.EqualFold(ce, "gzip") || strings.EqualFold(ce, "x-gzip"))
}

// gzipBody decompresses a gzip response body. The gzip reader is created
// on the first Read because creating it reads the gzip header, which the
// server may send only with its first event (under the idle timer).
type gzipBody struct {
	r io.Reader
	z *gzip.Reader
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.z == nil {
		z, err := gzip.NewReader(g.r)
		if err != nil {
			if err == io.EOF {
				return 0, io.EOF // an empty body: the stream ended
			}
			return 0, fmt.Errorf("gzip: %w", err)
		}
		g.z = z
	}
	return g.z.Read(p)
}

// idleReader counts bytes and runs the idle timer only while waiting for
// the server inside Read: time spent blocked on a full queue is our
// back-pressure, not the server's silence.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
	bytes prometheus.Counter
}

func (b *idleReader) Read(p []byte) (int, error) {
	if b.timer != nil {
		b.timer.Reset(b.idle)
	}
	n, err := b.r.Read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	if n > 0 {
		b.bytes.Add(float64(n))
	}
	return n, err
}
