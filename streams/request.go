package streams

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ssebridge/ssebridge/internal/names"
)

// request is what a subscriber asked for.
type request struct {
	// lastEventID is the resume position, "" for none.
	lastEventID string
	// since starts at a point in time (zero: not asked).
	since time.Time
	// subject narrows a NATS stream ("" for the configured subject).
	subject string
	// events keeps only these event types (nil: all).
	events map[string]bool
}

func parseRequest(r *http.Request) (*request, error) {
	q := r.URL.Query()
	req := &request{lastEventID: r.Header.Get("Last-Event-ID")}
	if req.lastEventID == "" {
		req.lastEventID = q.Get("lastEventId")
	}
	req.lastEventID = strings.TrimSpace(req.lastEventID)
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("%w: since=%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", ErrBadRequest, v)
		}
		req.since = t
	}
	if evs := q["event"]; len(evs) > 0 {
		req.events = make(map[string]bool, len(evs))
		for _, e := range evs {
			if e == "" {
				return nil, fmt.Errorf("%w: empty event= filter", ErrBadRequest)
			}
			req.events[e] = true
		}
	}
	if v, ok := q["subject"]; ok {
		if len(v) != 1 {
			return nil, fmt.Errorf("%w: give at most one subject= filter", ErrBadRequest)
		}
		if err := names.SubscribeSubject(v[0]); err != nil {
			return nil, fmt.Errorf("%w: subject filter: %v", ErrBadRequest, err)
		}
		req.subject = v[0]
	}
	return req, nil
}

// capEcho keeps an error body short: errors quote what the client sent
// (Last-Event-ID, since=), which may be kilobytes. The middle goes; the
// start and the reason at the end stay.
func capEcho(msg string) string {
	const keep = 120
	if len(msg) <= 2*keep+40 {
		return msg
	}
	return strings.ToValidUTF8(fmt.Sprintf("%s…(%d bytes)…%s", msg[:keep], len(msg)-2*keep, msg[len(msg)-keep:]), "")
}

// statusOf maps a subscription error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidLastEventID), errors.Is(err, ErrForeignLastEventID), errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	default:
		return http.StatusServiceUnavailable
	}
}
