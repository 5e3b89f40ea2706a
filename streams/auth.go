package streams

import (
	"crypto/rsa"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ssebridge/ssebridge/internal/metrics"
)

// DefaultJWTClaim is the claim listing the stream paths a token may read
// when jwt.claim is not set.
const DefaultJWTClaim = "streams"

// authorizer checks one stream's access control.
//
// A token may come from the Authorization header, from ?access_token= (an
// EventSource cannot set headers) or from the configured cookie. No token
// is 401; a token that is valid but does not grant this stream is 403.
type authorizer struct {
	path   string
	tokens [][]byte
	// known reports whether a token this stream refuses is a real
	// credential of another stream (of this Server or, through
	// Deps.KnownToken, of the deployment): such a token gets 403, not 401.
	// Never nil.
	known  func(token string) bool
	cookie string

	// JWT validation, when configured.
	jwt     bool
	hsKey   []byte
	rsKey   *rsa.PublicKey
	parser  *jwt.Parser
	claim   string
	methods []string
}

// newAuthorizer prepares the checks of a, which Config.Check found
// valid; it reads the RS256 public key file.
func newAuthorizer(path string, a *Auth, known func(token string) bool) (*authorizer, error) {
	z := &authorizer{path: path, cookie: a.Cookie, known: known}
	for _, t := range a.BearerTokens {
		z.tokens = append(z.tokens, []byte(t))
	}
	if j := a.JWT; j != nil {
		z.jwt = true
		z.claim = j.Claim
		if z.claim == "" {
			z.claim = DefaultJWTClaim
		}
		if j.HS256Secret != "" {
			z.hsKey = []byte(j.HS256Secret)
			z.methods = append(z.methods, jwt.SigningMethodHS256.Alg())
		}
		if j.RS256PublicKeyFile != "" {
			pem, err := os.ReadFile(j.RS256PublicKeyFile)
			if err != nil {
				return nil, fmt.Errorf("jwt.rs256_public_key_file: %w", err)
			}
			k, err := jwt.ParseRSAPublicKeyFromPEM(pem)
			if err != nil {
				return nil, fmt.Errorf("jwt.rs256_public_key_file %s: %w", j.RS256PublicKeyFile, err)
			}
			z.rsKey = k
			z.methods = append(z.methods, jwt.SigningMethodRS256.Alg())
		}
		// Only the configured algorithms are accepted, which rules out
		// "none" and HS256-signed-with-the-public-key confusion.
		opts := []jwt.ParserOption{jwt.WithValidMethods(z.methods), jwt.WithLeeway(30 * time.Second)}
		if j.Audience != "" {
			opts = append(opts, jwt.WithAudience(j.Audience))
		}
		z.parser = jwt.NewParser(opts...)
	}
	return z, nil
}

// check answers 401 or 403 and returns false unless r may read the stream.
func (z *authorizer) check(w http.ResponseWriter, r *http.Request) bool {
	tok := z.token(r)
	if tok == "" {
		z.refuse(w, http.StatusUnauthorized, `Bearer realm="ssebridge"`, "a token is required: Authorization: Bearer, ?access_token= or cookie")
		return false
	}
	for _, t := range z.tokens {
		if subtle.ConstantTimeCompare([]byte(tok), t) == 1 {
			return true
		}
	}
	msg := "invalid token"
	if z.jwt {
		claims := jwt.MapClaims{}
		_, err := z.parser.ParseWithClaims(tok, claims, z.key)
		if err == nil {
			if grants(claims[z.claim], z.path) {
				return true
			}
			z.refuse(w, http.StatusForbidden, "", "the token does not grant this stream")
			return false
		}
		// The JWT error only helps when the token was meant as one.
		if len(z.tokens) == 0 || looksLikeJWT(tok) {
			msg += ": " + err.Error()
		}
	}
	// Only now, when this stream's own checks failed: another stream's
	// bearer token is a real credential, just not for this path.
	if z.known(tok) {
		z.refuse(w, http.StatusForbidden, "", "the token does not grant this stream")
		return false
	}
	z.refuse(w, http.StatusUnauthorized, `Bearer realm="ssebridge", error="invalid_token"`, msg)
	return false
}

func (z *authorizer) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		if z.hsKey != nil {
			return z.hsKey, nil
		}
	case jwt.SigningMethodRS256.Alg():
		if z.rsKey != nil {
			return z.rsKey, nil
		}
	}
	return nil, fmt.Errorf("unexpected signing method %s", t.Method.Alg())
}

func (z *authorizer) refuse(w http.ResponseWriter, code int, challenge, msg string) {
	metrics.AuthFailures.WithLabelValues(z.path, fmt.Sprint(code)).Inc()
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	http.Error(w, msg, code)
}

// token finds the credential in the places a client can put one.
func (z *authorizer) token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	if z.cookie != "" {
		if c, err := r.Cookie(z.cookie); err == nil {
			return c.Value
		}
	}
	return ""
}

func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// grants reports whether a claim value lists path: a JSON array of paths,
// or one string of paths separated by spaces or commas (as OAuth scopes
// are). "*" grants every stream.
func grants(v any, path string) bool {
	var list []string
	switch c := v.(type) {
	case string:
		list = strings.FieldsFunc(c, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		for _, e := range c {
			if s, ok := e.(string); ok {
				list = append(list, s)
			}
		}
	}
	for _, p := range list {
		if p == path || p == "*" {
			return true
		}
	}
	return false
}

// applyCORS sets the CORS answer headers for r. It returns true when r was
// a preflight and has been answered completely.
func applyCORS(w http.ResponseWriter, r *http.Request, c *CORS) bool {
	h := w.Header()
	// The answer depends on Origin, so caches must key on it.
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if origin == "" {
		return false
	}
	allowed, wildcard := false, false
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			wildcard = true
		}
		if o == origin || o == "*" {
			allowed = true
		}
	}
	if !allowed {
		if preflight {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return true
		}
		// Without the allow headers the browser hides the response.
		return false
	}
	if wildcard && !c.AllowCredentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		// "*" is not allowed with credentials: echo the origin.
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if !preflight {
		return false
	}
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodGet {
		http.Error(w, "only GET is allowed on a stream", http.StatusMethodNotAllowed)
		return true
	}
	h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Last-Event-ID, Authorization, Cache-Control, Accept")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}
