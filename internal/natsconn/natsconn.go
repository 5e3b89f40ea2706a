// Package natsconn opens the bridge's NATS connection from a Config (the
// runner maps the YAML's nats block to it): URL, credentials (creds file,
// nkey seed, token, user/password), TLS, and reconnection that never gives
// up.
//
// A bridge runs for months next to a broker that will be upgraded and
// restarted; a connection that stops reconnecting after a few attempts is a
// feed that silently stalls, so reconnection is unbounded and every state
// change is logged.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

// Config is a NATS server and how to authenticate to it. At most one of
// CredsFile, NKeyFile, Token and User/Password is set.
type Config struct {
	// URL is the server, or a comma-separated list of servers.
	URL string
	// CredsFile is a credentials file (user JWT and nkey seed).
	CredsFile string
	// NKeyFile is an nkey seed file.
	NKeyFile string
	Token    string
	User     string
	Password string
	// TLS encrypts the connection; nil for Go's defaults (a tls:// URL
	// still upgrades).
	TLS *tlsconf.Config
}

// ErrNoURL is returned when the configuration names no server URL.
var ErrNoURL = errors.New("natsconn: no url")

// ErrAuthConflict is returned when more than one authentication method is
// configured: nats.go would silently pick one, and the user would debug the
// other.
var ErrAuthConflict = errors.New("natsconn: more than one of creds_file, nkey_file, token, user/password")

// ReconnectWait is the pause between reconnection attempts (nats.go adds
// jitter).
const ReconnectWait = time.Second

// Options turns cfg into nats.go options. name is the client name shown by
// the server's monitoring (e.g. "ssebridge"). log receives connection events.
func Options(cfg Config, name string, log *slog.Logger) ([]nats.Option, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(ReconnectWait),
		// The bridge may start before its broker (docker compose up):
		// keep trying in the background instead of failing start-up.
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of being held by nats.go and sent after the reconnect.
		// The sinks retry failed batches themselves, in order, from their
		// own queue; a held copy of a batch that already failed would reach
		// the server later, out of order with the retry (JetStream stored
		// such stale publishes after newer ones when the stream came back
		// part way through them).
		nats.ReconnectBufSize(-1),
	}
	opts = append(opts, Handlers(log)...)

	auths := 0
	if cfg.CredsFile != "" {
		auths++
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeyFile != "" {
		auths++
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.Token != "" {
		auths++
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.User != "" || cfg.Password != "" {
		auths++
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if auths > 1 {
		return nil, ErrAuthConflict
	}
	tc, err := tlsconf.Build(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if tc != nil {
		if tc.InsecureSkipVerify {
			log.Warn("nats: TLS certificate verification is disabled (insecure_skip_verify)")
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Handlers are connection callbacks that log every state change: a
// disconnect at warn (with its cause), a reconnect and a close at info,
// asynchronous errors (slow consumer, permission violation) at error.
func Handlers(log *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			} else {
				log.Info("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			// Only called when RetryOnFailedConnect connected late.
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Info("nats connection closed", "err", err)
			} else {
				log.Debug("nats connection closed")
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			log.Error("nats async error", attrs...)
		}),
	}
}

// Connect connects to cfg.URL with Options plus extra (which may override
// them). With RetryOnFailedConnect, an unreachable server is not an error:
// the connection comes up when the server does; check nc.IsConnected.
func Connect(cfg Config, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if cfg.URL == "" {
		return nil, ErrNoURL
	}
	opts, err := Options(cfg, name, log)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", redact(cfg.URL), err)
	}
	return nc, nil
}

// redact drops credentials (user:password@ or token@) from a URL list
// before it is logged or returned in an error.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok {
			continue
		}
		host, path, _ := strings.Cut(rest, "/")
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			u = scheme + "://REDACTED@" + host[at+1:]
			if path != "" || strings.Contains(rest, "/") {
				u += "/" + path
			}
			parts[i] = u
		}
	}
	return strings.Join(parts, ",")
}
