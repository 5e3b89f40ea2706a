// Package logging sets up ssebridge's structured logs (log/slog, text or
// JSON) and keeps secrets out of them.
//
// Every handler New returns is wrapped by Redact, so a header map, a config
// struct or a URL logged by mistake still never prints a password, a token
// or an Authorization value.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Redacted replaces a secret value in logs.
const Redacted = "[REDACTED]"

// New returns a logger writing to w in format ("text", "json"; "" is text)
// at level ("debug", "info", "warn", "error"; "" is info). The returned
// LevelVar lets a reload change the level without a new logger.
func New(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, nil, fmt.Errorf("log.format %q: want text or json", format)
	}
	return slog.New(Redact(h)), lv, nil
}

// SetLevel parses level into lv.
func SetLevel(lv *slog.LevelVar, level string) error {
	if level == "" {
		lv.Set(slog.LevelInfo)
		return nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("log.level %q: want debug, info, warn or error", level)
	}
	lv.Set(l)
	return nil
}

// secretWords are key fragments that mark a value as secret.
var secretWords = []string{"password", "passwd", "token", "secret", "authorization", "cookie", "apikey", "api_key", "api-key", "credential", "private_key", "privatekey"}

// IsSecretKey reports whether an attribute or header name looks like it
// holds a secret.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Redact wraps h so that attributes whose key looks secret are logged as
// Redacted, inside groups and string maps too, and URLs lose their
// userinfo password.
func Redact(h slog.Handler) slog.Handler { return redactHandler{h} }

type redactHandler struct{ h slog.Handler }

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactHandler{r.h.WithAttrs(red)}
}

func (r redactHandler) WithGroup(name string) slog.Handler { return redactHandler{r.h.WithGroup(name)} }

func redactAttr(a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindString:
		return slog.String(a.Key, redactString(v.String()))
	case slog.KindAny:
		switch x := v.Any().(type) {
		case map[string]string:
			return slog.Any(a.Key, redactMap(x))
		case map[string][]string:
			return slog.Any(a.Key, redactMultiMap(x))
		case http.Header:
			return slog.Any(a.Key, http.Header(redactMultiMap(x)))
		case *url.URL:
			if x != nil {
				return slog.String(a.Key, RedactURL(x.String()))
			}
		case error:
			return slog.String(a.Key, redactString(x.Error()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func redactMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if IsSecretKey(k) {
			v = Redacted
		}
		out[k] = v
	}
	return out
}

func redactMultiMap(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		if IsSecretKey(k) {
			v = []string{Redacted}
		}
		out[k] = v
	}
	return out
}

// redactString hides "Authorization: ..." / "Bearer ..." credentials and
// URL passwords embedded in free text such as error messages.
func redactString(s string) string {
	if s == "" {
		return s
	}
	low := strings.ToLower(s)
	for _, marker := range []string{"authorization: ", "authorization=", "bearer ", "basic "} {
		for i := strings.Index(low, marker); i >= 0; {
			start := i + len(marker)
			end := start
			for end < len(s) && s[end] != ' ' && s[end] != '"' && s[end] != '\'' && s[end] != ',' && s[end] != '\n' {
				end++
			}
			if marker == "authorization: " || marker == "authorization=" {
				// Keep the scheme word, hide the credential after it.
				if sp := strings.IndexByte(s[start:end], ' '); sp < 0 && (strings.EqualFold(s[start:end], "bearer") || strings.EqualFold(s[start:end], "basic")) {
					i = strings.Index(low[end:], marker)
					if i >= 0 {
						i += end
					}
					continue
				}
			}
			if end > start {
				s = s[:start] + Redacted + s[end:]
				low = strings.ToLower(s)
				end = start + len(Redacted)
			}
			next := strings.Index(low[end:], marker)
			if next < 0 {
				break
			}
			i = end + next
		}
	}
	if !strings.Contains(s, "://") {
		return s
	}
	if !strings.ContainsAny(s, " \t\n") {
		// A lone URL (a feed's url attribute): hide userinfo and secret
		// query parameters.
		return RedactURL(s)
	}
	if strings.Contains(s, "@") {
		s = redactURLsIn(s)
	}
	return s
}

// redactURLsIn hides the password of every URL in s.
func redactURLsIn(s string) string {
	fields := strings.Fields(s)
	for _, f := range fields {
		// The punctuation around a URL in text is not part of it:
		// net/http writes `Get "URL": ...`.
		trim := strings.Trim(f, `"'(),;:`)
		if strings.Contains(trim, "://") && strings.Contains(trim, "@") {
			if r := RedactURL(trim); r != trim {
				s = strings.ReplaceAll(s, trim, r)
			}
		}
	}
	return s
}

// RedactURL hides a URL's userinfo password and the values of query
// parameters whose names look secret (api keys in feed URLs are common).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
			changed = true
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if IsSecretKey(k) || strings.EqualFold(k, "key") || strings.EqualFold(k, "sig") {
				q[k] = []string{"REDACTED"}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return raw
	}
	return u.String()
}
