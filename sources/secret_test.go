package sources

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestErrorsHideURLSecrets: a feed URL often carries its API key in the
// query. A connection error must not repeat it: the error text reaches the
// logs, Status.LastError, and through it /api/status and /readyz, which
// show the URL itself only redacted.
func TestErrorsHideURLSecrets(t *testing.T) {
	const secret = "s3cr3t-KEY"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() // nothing listens once closed
	ln.Close()

	// A server that redirects forever, with the key in every Location.
	loop := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/again?api_key="+secret+"&n="+r.URL.Query().Get("n")+"x", http.StatusFound)
	})
	for name, url := range map[string]string{
		"refused":  refused + "/feed?api_key=" + secret,
		"redirect": loop.URL + "/feed?token=" + secret,
	} {
		t.Run(name, func(t *testing.T) {
			w, err := New(Config{Name: tname(t), URL: url, Once: true}, newTestSink(), nil)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Run(context.Background())
			if err == nil {
				t.Fatal("Run = nil, want a connection error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Run error shows the secret: %v", err)
			}
			if st := w.Status(); st.LastError == "" || strings.Contains(st.LastError, secret) {
				t.Errorf("Status.LastError = %q", st.LastError)
			}
		})
	}
}

// TestRedirectSendsNoReferer: on a redirect net/http sends the previous
// URL as Referer, query and API key included, to whatever host the
// Location names; Authorization and Cookie are already withheld from
// another host, and the key in the URL must not leak that way either.
func TestRedirectSendsNoReferer(t *testing.T) {
	const secret = "s3cr3t-KEY"
	var log requestLog
	other := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		log.add(r, "")
		sseHeaders(w)
		write(w, event(1, "\n"))
	})
	// Another host name for the same loopback server: a cross-host hop.
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	feed := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherURL+"/cdn/feed", http.StatusFound)
	})
	sink := newTestSink()
	w, err := New(Config{Name: tname(t), URL: feed.URL + "/feed?api_key=" + secret, Once: true}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	reqs := log.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests at the other host", len(reqs))
	}
	for k, vs := range reqs[0].header {
		for _, v := range vs {
			if strings.Contains(v, secret) {
				t.Errorf("the other host got the key in %s: %s", k, v)
			}
		}
	}
	if !eqStrings(sink.ids(), []string{"1"}) {
		t.Errorf("ids = %v", sink.ids())
	}
}
