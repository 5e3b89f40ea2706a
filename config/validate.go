package config

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssebridge/ssebridge/sinks"
	"github.com/ssebridge/ssebridge/sources"
)

// Validate reports every problem in c at once as Errors, or returns nil.
//
// It works on a Config read by Load (problems carry file and line) as well
// as on one built in code (problems carry only the key). A zero value where
// a default exists is accepted as "use the default", so Validate may run
// before or after SetDefaults. Validate does not modify c.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.top()
	for i := range c.Pipelines {
		v.pipeline(i, &c.Pipelines[i])
	}
	v.uniquePipelines()
	for i := range c.Streams {
		v.stream(i, &c.Streams[i])
	}
	v.uniqueStreams()
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// Line returns the line key was read from, or the line of its nearest
// enclosing key when key itself was not written (a missing required key is
// reported where its parent is). It returns 0 for a Config built in code.
func (c *Config) Line(key string) int {
	if c.lines == nil {
		return 0
	}
	for {
		if l, ok := c.lines[key]; ok {
			return l
		}
		if key == "" {
			return 0
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			key = ""
		} else {
			key = key[:i]
		}
	}
}

// Errorf builds an Error located at key, for problems found after loading
// (a sink that cannot start, say) that should point at the file like
// validation problems do.
func (c *Config) Errorf(key, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, v.c.Errorf(key, format, args...))
}

// followf is errorf for a problem that may only follow from one already
// reported at one of causes.
func (v *validator) followf(causes []string, key, format string, args ...any) {
	e := v.c.Errorf(key, format, args...)
	e.causes = causes
	v.errs = append(v.errs, e)
}

var (
	natsCauses  = []string{"nats", "nats.url", "nats.embedded"}
	kafkaCauses = []string{"kafka", "kafka.brokers"}
)

func (v *validator) nonNegative(key string, n int64) {
	if n < 0 {
		v.errorf(key, "must not be negative")
	}
}

func (v *validator) duration(key string, d Duration) {
	if d < 0 {
		v.errorf(key, "must not be negative")
	}
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if value == "" {
		return // the default applies
	}
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.errorf(key, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
}

func (v *validator) hostPort(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || strings.ContainsAny(host, " /") {
		v.errorf(key, "must be HOST:PORT, got %q", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.errorf(key, "port must be a number from 0 to 65535, got %q", port)
	}
}

func (v *validator) tls(key string, t *TLS) {
	if t == nil {
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf(key, "cert_file and key_file go together")
	}
}

func (v *validator) top() {
	c := v.c
	v.duration("shutdown_timeout", c.ShutdownTimeout)
	if c.HTTP.Addr != "" {
		v.hostPort("http.addr", c.HTTP.Addr)
	}
	v.nonNegative("http.max_subscribers", int64(c.HTTP.MaxSubscribers))
	if t := c.HTTP.TLS; t != nil {
		if t.CertFile == "" {
			v.errorf("http.tls.cert_file", "required to serve HTTPS (a PEM certificate chain)")
		}
		if t.KeyFile == "" {
			v.errorf("http.tls.key_file", "required to serve HTTPS (the PEM private key of cert_file)")
		}
	}
	v.oneOf("log.format", c.Log.Format, LogFormatText, LogFormatJSON)
	v.oneOf("log.level", c.Log.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)

	n := c.NATS
	if n.URL != "" && n.Embedded {
		v.errorf("nats.url", "cannot be used together with embedded: true; choose one")
	}
	if n.URL != "" {
		v.natsURL("nats.url", n.URL)
	}
	if n.Listen != "" {
		if !n.Embedded {
			v.errorf("nats.listen", "only applies to the embedded server (embedded: true)")
		}
		v.hostPort("nats.listen", n.Listen)
	}
	if n.CredsFile != "" && n.NKeyFile != "" {
		v.errorf("nats.nkey_file", "cannot be used together with creds_file; choose one")
	}
	if n.Password != "" && n.User == "" {
		v.errorf("nats.password", "needs user")
	}
	if n.Token != "" && n.User != "" {
		v.errorf("nats.token", "cannot be used together with user; choose one")
	}
	v.tls("nats.tls", n.TLS)

	k := c.Kafka
	for i, b := range k.Brokers {
		key := fmt.Sprintf("kafka.brokers[%d]", i)
		if b == "" {
			v.errorf(key, "must not be empty")
			continue
		}
		v.hostPort(key, b)
	}
	if s := k.SASL; s != nil {
		if s.Mechanism == "" {
			v.errorf("kafka.sasl.mechanism", "required (plain, scram-sha-256 or scram-sha-512)")
		}
		v.oneOf("kafka.sasl.mechanism", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
		if s.Username == "" {
			v.errorf("kafka.sasl.username", "required")
		}
		if s.Password == "" {
			v.errorf("kafka.sasl.password", "required")
		}
	}
	v.tls("kafka.tls", k.TLS)

	if len(c.Pipelines) == 0 && len(c.Streams) == 0 {
		v.errorf("pipelines", "no pipelines and no streams: nothing to run")
	}
	v.cluster()
}

// cluster checks the cluster block; its keys are checked even when it is
// disabled, so that turning it on finds no new problem.
func (v *validator) cluster() {
	cl := v.c.Cluster
	if cl.Enabled && !v.c.NATS.Configured() {
		v.followf(natsCauses, "cluster.enabled", "needs NATS (nats.url, or nats.embedded for a test): the replicas coordinate through a JetStream key-value bucket")
	}
	if cl.Bucket != "" && !kvNameRE.MatchString(cl.Bucket) {
		v.errorf("cluster.bucket", "must be letters, digits, - and _ (a JetStream bucket name), got %q", cl.Bucket)
	}
	v.duration("cluster.lease_ttl", cl.LeaseTTL)
	if cl.LeaseTTL > 0 && cl.LeaseTTL.D() < time.Second {
		v.errorf("cluster.lease_ttl", "must be at least 1s (leases are renewed every third of it), got %s", cl.LeaseTTL.D())
	}
	if cl.ReplicaID != "" && !kvNameRE.MatchString(cl.ReplicaID) {
		v.errorf("cluster.replica_id", "must be letters, digits, - and _, got %q", cl.ReplicaID)
	}
}

// kvNameRE is what a JetStream bucket name and one key token accept.
var kvNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (v *validator) natsURL(key, list string) {
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			// The text is not echoed: a URL may carry a password.
			v.errorf(key, "must be a URL like nats://127.0.0.1:4222")
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			v.errorf(key, "scheme must be nats, tls, ws or wss, got %q", u.Scheme)
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (v *validator) pipeline(i int, p *Pipeline) {
	key := fmt.Sprintf("pipelines[%d]", i)
	switch {
	case p.Name == "":
		v.errorf(key+".name", "required")
	case !nameRE.MatchString(p.Name) || len(p.Name) > 100:
		v.errorf(key+".name", "must be letters, digits, '.', '_' or '-' (at most 100), got %q", p.Name)
	}
	v.source(key+".source", &p.Source)
	v.sink(key+".sink", &p.Sink)
}

// source checks a pipeline's source: the rules of the worker's own
// Config (sources.Config.Check, written once there, so that a source the
// file accepts is one the worker accepts) under the file's keys, then the
// rules that only the file has.
func (v *validator) source(key string, s *Source) {
	// Check names a header as Options canonicalised it; the key names it
	// as the file has it.
	written := make(map[string]string, len(s.Headers))
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		if canon := http.CanonicalHeaderKey(name); written[canon] == "" {
			written[canon] = name
		}
	}
	s.Options("").Check(func(field, msg string) {
		k := sourceKey(field)
		if name, ok := strings.CutPrefix(field, sources.HeaderKey); ok {
			k = "headers." + written[name]
		} else if field == "LastEventID" {
			k = "headers." + written["Last-Event-Id"]
		}
		v.errorf(key+"."+k, "%s", msg)
	})

	// Header names ignore case: of User-Agent and user-agent only one is
	// sent, and which one would depend on map order. Sorted, so that the
	// complaint is the same on every run.
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(s.Headers)) {
		hk := key + ".headers." + name
		canon := http.CanonicalHeaderKey(name)
		if first, dup := seen[canon]; dup {
			// Point at whichever of the two comes later in the file.
			later := name
			if v.c.Line(key+".headers."+first) > v.c.Line(hk) {
				first, later = later, first
			}
			v.errorf(key+".headers."+later, "same header as %s (header names ignore case); keep one", first)
			continue
		}
		seen[canon] = name
	}
	for j, e := range s.Events {
		if e == "" || strings.ContainsAny(e, "\r\n") {
			v.errorf(fmt.Sprintf("%s.events[%d]", key, j), "must be a non-empty event type on one line")
		}
	}
	v.tls(key+".tls", s.TLS)
}

// sourceKeys map the fields of sources.Config that source sets to the
// keys of a pipeline's source block.
var sourceKeys = map[string]string{
	"URL":          "url",
	"Method":       "method",
	"RetryInitial": "retry.initial",
	"RetryMax":     "retry.max",
	"IdleTimeout":  "idle_timeout",
	"MaxEventSize": "max_event_size",
	"QueueSize":    "queue_size",
	"MaxUnsaved":   "checkpoint_max_unsaved",
}

// sourceKey is the key, relative to a source block, of the sources.Config
// field a problem concerns.
func sourceKey(field string) string {
	if k, ok := sourceKeys[field]; ok {
		return k
	}
	return field // not set by source: cannot happen
}

func orDefault(d Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d.D()
}

// connections are the top-level blocks a sink driver may publish through
// (sinks.Driver.Shared): whether the file configured each, and the keys
// whose own problem would explain that it did not.
var connections = map[string]struct {
	configured func(*Config) bool
	causes     []string
	missing    string
}{
	"nats":  {func(c *Config) bool { return c.NATS.Configured() }, natsCauses, "NATS is not configured: set nats.url or nats.embedded"},
	"kafka": {func(c *Config) bool { return c.Kafka.Configured() }, kafkaCauses, "Kafka is not configured: set kafka.brokers"},
}

// sink checks a pipeline's sink through its driver: the block decodes into
// the driver's options, and the driver's Check reports under the block's
// key.
func (v *validator) sink(key string, s *Sink) {
	if s.Kind == "" {
		v.errorf(key, "needs exactly one of %s", orList(sinks.Drivers()))
		return
	}
	dk := key + "." + s.Kind
	r, ok := sinks.Lookup(s.Kind)
	if !ok {
		v.errorf(dk, "unknown sink driver (registered: %s)", strings.Join(sinks.Drivers(), ", "))
		return
	}
	if name := r.Shared(); name != "" {
		conn, known := connections[name]
		switch {
		case !known:
			v.errorf(dk, "the driver publishes through a %q connection, which ssebridge does not configure", name)
		case !conn.configured(v.c):
			v.followf(conn.causes, dk, "%s", conn.missing)
		}
	}
	opts, err := r.Decode(s.Block)
	if err != nil {
		// Only a Config built in code gets here: Load checked the block
		// against the same type.
		v.errorf(dk, "%s", strings.Join(strings.Fields(err.Error()), " "))
		return
	}
	r.Check(opts, func(k, msg string) { v.errs = append(v.errs, v.c.Errorf(join(dk, k), "%s", msg)) })
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	switch len(names) {
	case 0:
		return "the sink drivers (none is registered)"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// reservedPaths are served by ssebridge itself.
var reservedPaths = []string{"/", "/metrics", "/healthz", "/readyz", "/api"}

// stream checks a reverse stream: the rules of the streams package's own
// Config (streams.Config.Check, written once there, so that a stream the
// file accepts is one streams.New accepts) under the file's keys, then the
// rules that only the file has: a path the bridge's mux can hold and does
// not serve itself, a subject and a stream name wherever jetstream is
// written, the connections, and CORS.
func (v *validator) stream(i int, s *Stream) {
	key := fmt.Sprintf("streams[%d]", i)
	sc := s.Options()
	sc.Check(func(field, msg string) {
		k := key
		if field != "" {
			k += "." + streamKey(field)
		}
		v.errorf(k, "%s", msg)
	})

	if p := s.Path; strings.HasPrefix(p, "/") {
		// The bridge mounts the path on an http.ServeMux, which cleans
		// request paths and reads braces and spaces as pattern syntax.
		if strings.ContainsAny(p, "?#{} \t\r\n") || path.Clean(p) != p {
			v.errorf(key+".path", "must be a clean path like /sse/recentchange, got %q", p)
		} else {
			for _, r := range reservedPaths {
				if p == r || r != "/" && strings.HasPrefix(p, r+"/") {
					v.errorf(key+".path", "%s is served by ssebridge itself", r)
					break
				}
			}
		}
	}
	switch {
	case s.NATS != nil && s.Kafka == nil:
		nk := key + ".nats"
		if !v.c.NATS.Configured() {
			v.followf(natsCauses, nk, "NATS is not configured: set nats.url or nats.embedded")
		}
		// streams serves a JetStream stream's every subject when none
		// is given; the file asks for the subject, and a jetstream block
		// for the stream's name. (Both empty, Check reported the subject.)
		if js := s.NATS.JetStream; js != nil && js.Stream == "" {
			v.errorf(nk+".jetstream.stream", "required")
		} else if js != nil && s.NATS.Subject == "" {
			v.errorf(nk+".subject", "required")
		}
	case s.Kafka != nil && s.NATS == nil:
		if !v.c.Kafka.Configured() {
			v.followf(kafkaCauses, key+".kafka", "Kafka is not configured: set kafka.brokers")
		}
	}
	if c := s.CORS; c != nil {
		ck := key + ".cors"
		if len(c.AllowedOrigins) == 0 {
			v.errorf(ck+".allowed_origins", "required")
		}
		for j, o := range c.AllowedOrigins {
			ok := fmt.Sprintf("%s.allowed_origins[%d]", ck, j)
			if o == "*" {
				if c.AllowCredentials {
					v.errorf(ok, `"*" cannot be combined with allow_credentials: browsers refuse it`)
				}
				continue
			}
			if u, err := url.Parse(o); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
				v.errorf(ok, "must be * or an origin like https://app.example.com, got %q", o)
			}
		}
	}
}

// streamKeys map the fields of streams.Config, and of the types it holds,
// to the keys of a stream block.
var streamKeys = map[string]string{
	"Path":              "path",
	"NATS":              "nats",
	"NATS.Subject":      "nats.subject",
	"NATS.JetStream":    "nats.jetstream.stream",
	"Kafka":             "kafka",
	"Kafka.Topic":       "kafka.topic",
	"Kafka.Start":       "kafka.start",
	"Heartbeat":         "heartbeat",
	"MaxPending":        "max_pending",
	"MaxSubscribers":    "max_subscribers",
	"WindowEvents":      "window_events",
	"WindowBytes":       "window_bytes",
	"Coalesce":          "coalesce",
	"Auth":              "auth",
	"Auth.BearerTokens": "auth.bearer_tokens",
	"Auth.JWT":          "auth.jwt",
}

// streamKey is the key, relative to a stream block, of the streams.Config
// field a problem concerns; an index stays as it is
// ("Auth.BearerTokens[1]" is "auth.bearer_tokens[1]").
func streamKey(field string) string {
	base, index := field, ""
	if i := strings.IndexByte(field, '['); i >= 0 {
		base, index = field[:i], field[i:]
	}
	if k, ok := streamKeys[base]; ok {
		return k + index
	}
	return field // not set by stream: cannot happen
}

func (v *validator) uniquePipelines() {
	first := map[string]int{}
	for i, p := range v.c.Pipelines {
		if p.Name == "" {
			continue
		}
		if j, dup := first[p.Name]; dup {
			v.errorf(fmt.Sprintf("pipelines[%d].name", i), "duplicate pipeline name %q (also pipelines[%d]%s)", p.Name, j, v.at(fmt.Sprintf("pipelines[%d].name", j)))
			continue
		}
		first[p.Name] = i
	}
}

func (v *validator) uniqueStreams() {
	first := map[string]int{}
	for i, s := range v.c.Streams {
		if s.Path == "" {
			continue
		}
		if j, dup := first[s.Path]; dup {
			v.errorf(fmt.Sprintf("streams[%d].path", i), "duplicate stream path %q (also streams[%d]%s)", s.Path, j, v.at(fmt.Sprintf("streams[%d].path", j)))
			continue
		}
		first[s.Path] = i
	}
}

// at names the line of key for a cross-reference, or "" without lines.
func (v *validator) at(key string) string {
	if l := v.c.Line(key); l > 0 {
		return fmt.Sprintf(" at line %d", l)
	}
	return ""
}
