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
