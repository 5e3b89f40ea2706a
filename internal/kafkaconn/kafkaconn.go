// Package kafkaconn builds kafka-go connection settings from a Config (the
// runner maps the YAML's kafka block to it): client ID, SASL (PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512) and TLS. Sinks use Transport for a
// kafka.Writer; reverse streams use Dialer for a kafka.Reader.
package kafkaconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

// Config is a Kafka cluster and how to authenticate to it.
type Config struct {
	// Brokers are the bootstrap brokers, HOST:PORT each.
	Brokers []string
	// ClientID is sent to the brokers (DefaultClientID when empty).
	ClientID string
	// SASL authenticates the connections; nil for none.
	SASL *SASL
	// TLS encrypts the connections; nil for plain TCP.
	TLS *tlsconf.Config
}

// Configured reports whether c names a cluster at all.
func (c Config) Configured() bool { return len(c.Brokers) > 0 }

// SASL is SASL authentication.
type SASL struct {
	// Mechanism is MechanismPlain, MechanismSCRAMSHA256 or
	// MechanismSCRAMSHA512 (case is ignored).
	Mechanism string
	Username  string
	Password  string
}

// The SASL mechanisms, as the configuration spells them.
const (
	MechanismPlain       = "plain"
	MechanismSCRAMSHA256 = "scram-sha-256"
	MechanismSCRAMSHA512 = "scram-sha-512"
)

// DefaultClientID is the client ID sent when the configuration names none;
// it lets broker operators see which connections are the bridge's.
const DefaultClientID = "ssebridge"

// DialTimeout bounds one TCP (and TLS) connection attempt.
const DialTimeout = 10 * time.Second

// ErrNoBrokers is returned when the configuration lists no broker.
var ErrNoBrokers = errors.New("kafkaconn: no brokers")

// ErrMechanism is an unknown SASL mechanism.
var ErrMechanism = errors.New("kafkaconn: unknown SASL mechanism")

// Mechanism returns the kafka-go SASL mechanism s describes, nil when s is
// nil.
func Mechanism(s *SASL) (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	switch strings.ToLower(s.Mechanism) {
	case MechanismPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case MechanismSCRAMSHA256:
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case MechanismSCRAMSHA512:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("%w %q (want %s, %s or %s)", ErrMechanism, s.Mechanism, MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
}

// settings are what Transport and Dialer share.
func settings(cfg Config) (clientID string, mech sasl.Mechanism, tc *tls.Config, err error) {
	if len(cfg.Brokers) == 0 {
		return "", nil, nil, ErrNoBrokers
	}
	clientID = cfg.ClientID
	if clientID == "" {
		clientID = DefaultClientID
	}
	if mech, err = Mechanism(cfg.SASL); err != nil {
		return "", nil, nil, err
	}
	if tc, err = tlsconf.Build(cfg.TLS); err != nil {
		return "", nil, nil, fmt.Errorf("kafka: %w", err)
	}
	return clientID, mech, tc, nil
}

// Transport returns a kafka-go transport for a kafka.Writer (or a
// kafka.Client). The caller owns it and calls CloseIdleConnections when
// done: unlike kafka.DefaultTransport, its pooled connections then go away
// with the writer instead of living for the life of the process.
func Transport(cfg Config) (*kafka.Transport, error) {
	clientID, mech, tc, err := settings(cfg)
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		DialTimeout: DialTimeout,
		ClientID:    clientID,
		SASL:        mech,
		TLS:         tc,
	}, nil
}

// Dialer returns a kafka-go dialer for a kafka.Reader or kafka.DialLeader.
func Dialer(cfg Config) (*kafka.Dialer, error) {
	clientID, mech, tc, err := settings(cfg)
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		Timeout:       DialTimeout,
		DualStack:     true,
		ClientID:      clientID,
		SASLMechanism: mech,
		TLS:           tc,
	}, nil
}
