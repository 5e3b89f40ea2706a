package streams

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// status issues a GET with the given token placement and returns the
// answer's status and headers without reading a stream's body.
func status(t *testing.T, url string, hdr map[string]string, cookie *http.Cookie) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestBearerTokens(t *testing.T) {
	e := startNATS(t)
	a := coreCfg("/auth/a", "a")
	a.Auth = &Auth{BearerTokens: []string{"token-a"}, Cookie: "sse_token"}
	b := coreCfg("/auth/b", "b")
	b.Auth = &Auth{BearerTokens: []string{"token-b"}}
	_, hs := startServer(t, []Config{a, b}, Deps{NATS: e.nc})
	u := hs.URL + "/auth/a"
	fail401 := metrics.AuthFailures.WithLabelValues("/auth/a", "401")
	fail403 := metrics.AuthFailures.WithLabelValues("/auth/a", "403")
	n401, n403 := metricValue(t, fail401), metricValue(t, fail403)

	code, h := status(t, u, nil, nil)
	if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", code, h.Get("WWW-Authenticate"))
	}
	if code, _ := status(t, u, map[string]string{"Authorization": "Bearer nope"}, nil); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d, want 401", code)
	}
	if code, _ := status(t, u, map[string]string{"Authorization": "Bearer token-b"}, nil); code != http.StatusForbidden {
		t.Errorf("another stream's token: %d, want 403", code)
	}
	if d := metricValue(t, fail401) - n401; d != 2 {
		t.Errorf("auth failures 401 grew by %v, want 2", d)
	}
	if d := metricValue(t, fail403) - n403; d != 1 {
		t.Errorf("auth failures 403 grew by %v, want 1", d)
	}

	if code, _ := status(t, u, map[string]string{"Authorization": "Bearer token-a"}, nil); code != http.StatusOK {
		t.Errorf("Authorization header: %d, want 200", code)
	}
	if code, _ := status(t, u+"?access_token=token-a", nil, nil); code != http.StatusOK {
		t.Errorf("access_token query: %d, want 200", code)
	}
	if code, _ := status(t, u, nil, &http.Cookie{Name: "sse_token", Value: "token-a"}); code != http.StatusOK {
		t.Errorf("cookie: %d, want 200", code)
	}
	// A stream without a cookie setting ignores cookies.
	if code, _ := status(t, hs.URL+"/auth/b", nil, &http.Cookie{Name: "sse_token", Value: "token-b"}); code != http.StatusUnauthorized {
		t.Errorf("cookie on a stream without cookie auth: %d, want 401", code)
	}
}

func TestJWT(t *testing.T) {
	e := startNATS(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	hs256 := coreCfg("/jwt/hs", "hs")
	hs256.Auth = &Auth{JWT: &JWT{HS256Secret: "s3cret", Audience: "ssebridge"}}
	rs256 := coreCfg("/jwt/rs", "rs")
	rs256.Auth = &Auth{JWT: &JWT{RS256PublicKeyFile: pubFile, Claim: "allowed"}}
	_, hs := startServer(t, []Config{hs256, rs256}, Deps{NATS: e.nc})

	sign := func(m jwt.SigningMethod, k any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hsTok := func(claims jwt.MapClaims) string { return sign(jwt.SigningMethodHS256, []byte("s3cret"), claims) }
	exp := time.Now().Add(time.Hour).Unix()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"aud": "ssebridge", "streams": []string{"/jwt/hs"}}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"hs256 granted", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "ssebridge", "exp": exp, "streams": []string{"/jwt/hs", "/x"}}), 200},
		{"hs256 scope string", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "ssebridge", "streams": "/x /jwt/hs"}), 200},
		{"hs256 other stream", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "ssebridge", "streams": []string{"/x"}}), 403},
		{"hs256 no claim", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "ssebridge"}), 403},
		{"hs256 wrong audience", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "other", "streams": []string{"/jwt/hs"}}), 401},
		{"hs256 expired", "/jwt/hs", hsTok(jwt.MapClaims{"aud": "ssebridge", "exp": time.Now().Add(-time.Hour).Unix(), "streams": []string{"/jwt/hs"}}), 401},
		{"hs256 wrong secret", "/jwt/hs", sign(jwt.SigningMethodHS256, []byte("guess"), jwt.MapClaims{"aud": "ssebridge", "streams": []string{"/jwt/hs"}}), 401},
		{"alg none", "/jwt/hs", none, 401},
		{"rs256 granted", "/jwt/rs", sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"allowed": []string{"/jwt/rs"}}), 200},
		{"rs256 wildcard", "/jwt/rs", sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"allowed": "*"}), 200},
		{"rs256 other stream", "/jwt/rs", sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"allowed": []string{"/jwt/hs"}}), 403},
		{"hs256 token on rs256 stream", "/jwt/rs", hsTok(jwt.MapClaims{"allowed": []string{"/jwt/rs"}}), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := status(t, hs.URL+tc.path+"?access_token="+tc.token, nil, nil)
			if code != tc.want {
				t.Errorf("%d, want %d", code, tc.want)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	e := startNATS(t)
	creds := coreCfg("/cors/creds", "c")
	creds.CORS = &CORS{AllowedOrigins: []string{"https://app.example"}, AllowCredentials: true}
	creds.Auth = &Auth{BearerTokens: []string{"tok"}}
	open := coreCfg("/cors/open", "o")
	open.CORS = &CORS{AllowedOrigins: []string{"*"}}
	_, hs := startServer(t, []Config{creds, open}, Deps{NATS: e.nc})

	preflight := func(path, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, hs.URL+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "last-event-id, authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// A preflight carries no credentials, so it must not need any.
	resp := preflight("/cors/creds", "https://app.example")
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: %s", resp.Status)
	}
	if h.Get("Access-Control-Allow-Origin") != "https://app.example" || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight allow origin/credentials: %q %q", h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"))
	}
	allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"last-event-id", "authorization"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, want)
		}
	}
	if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("Access-Control-Allow-Methods = %q", h.Get("Access-Control-Allow-Methods"))
	}
	if !slices.Contains(h.Values("Vary"), "Origin") {
		t.Errorf("Vary = %v, want Origin", h.Values("Vary"))
	}

	resp = preflight("/cors/creds", "https://evil.example")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from a foreign origin: %s, allow origin %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	code, h := status(t, hs.URL+"/cors/creds", map[string]string{"Origin": "https://app.example", "Authorization": "Bearer tok"}, nil)
	if code != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "https://app.example" || !slices.Contains(h.Values("Vary"), "Origin") {
		t.Errorf("GET with origin: %d, allow origin %q, Vary %v", code, h.Get("Access-Control-Allow-Origin"), h.Values("Vary"))
	}
	// A refusal is readable by the page too, so it can tell 401 from a network error.
	code, h = status(t, hs.URL+"/cors/creds", map[string]string{"Origin": "https://app.example"}, nil)
	if code != http.StatusUnauthorized || h.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("401 with origin: %d, allow origin %q", code, h.Get("Access-Control-Allow-Origin"))
	}
	code, h = status(t, hs.URL+"/cors/open", map[string]string{"Origin": "https://any.example"}, nil)
	if code != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("wildcard origin: %d, allow origin %q", code, h.Get("Access-Control-Allow-Origin"))
	}
}

// TestKnownToken checks Deps.KnownToken: the bridge runs one Server per
// stream, so a bearer token of another stream is only known through it,
// and must then get 403 rather than 401, counted under that status.
func TestKnownToken(t *testing.T) {
	e := startNATS(t)
	bearer := coreCfg("/known/bearer", "kb")
	bearer.Auth = &Auth{BearerTokens: []string{"mine"}}
	jwtOnly := coreCfg("/known/jwt", "kj")
	jwtOnly.Auth = &Auth{JWT: &JWT{HS256Secret: "s3cret"}}
	cfgs := []Config{bearer, jwtOnly}

	var asked []string
	var mu sync.Mutex
	known := func(tok string) bool {
		mu.Lock()
		asked = append(asked, tok)
		mu.Unlock()
		return tok == "elsewhere"
	}
	_, with := startServer(t, cfgs, Deps{NATS: e.nc, KnownToken: known})
	_, without := startServer(t, cfgs, Deps{NATS: e.nc})

	for _, path := range []string{"/known/bearer", "/known/jwt"} {
		fail401 := metrics.AuthFailures.WithLabelValues(path, "401")
		fail403 := metrics.AuthFailures.WithLabelValues(path, "403")
		n401, n403 := metricValue(t, fail401), metricValue(t, fail403)
		for _, tc := range []struct {
			base, token string
			want        int
		}{
			{with.URL, "elsewhere", http.StatusForbidden},
			{with.URL, "nope", http.StatusUnauthorized},
			{with.URL, "", http.StatusUnauthorized},
			{without.URL, "elsewhere", http.StatusUnauthorized},
		} {
			hdr := map[string]string{}
			if tc.token != "" {
				hdr["Authorization"] = "Bearer " + tc.token
			}
			if code, _ := status(t, tc.base+path, hdr, nil); code != tc.want {
				t.Errorf("%s token %q (KnownToken set: %v): %d, want %d", path, tc.token, tc.base == with.URL, code, tc.want)
			}
		}
		if d := metricValue(t, fail401) - n401; d != 3 {
			t.Errorf("%s: auth failures 401 grew by %v, want 3", path, d)
		}
		if d := metricValue(t, fail403) - n403; d != 1 {
			t.Errorf("%s: auth failures 403 grew by %v, want 1", path, d)
		}
	}
	if code, _ := status(t, with.URL+"/known/bearer", map[string]string{"Authorization": "Bearer mine"}, nil); code != http.StatusOK {
		t.Errorf("own token: %d, want 200", code)
	}
	// KnownToken is a fallback for refused tokens only: an accepted token
	// or a request without one never reaches it.
	mu.Lock()
	defer mu.Unlock()
	if slices.ContainsFunc(asked, func(s string) bool { return s == "mine" || s == "" }) {
		t.Errorf("KnownToken asked about %q", asked)
	}
}
