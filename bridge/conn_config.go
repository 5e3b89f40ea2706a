package bridge

import (
	"github.com/ssebridge/ssebridge/config"
	"github.com/ssebridge/ssebridge/internal/kafkaconn"
	"github.com/ssebridge/ssebridge/internal/natsconn"
	"github.com/ssebridge/ssebridge/internal/tlsconf"
)

// This file maps the YAML's connection blocks (nats, kafka and every tls)
// to the plain options of the packages that open the connections; nothing
// below the runner reads the YAML types.

// natsConfig is the nats block as natsconn takes it.
func natsConfig(n config.NATS) natsconn.Config {
	return natsconn.Config{
		URL:       n.URL,
		CredsFile: n.CredsFile,
		NKeyFile:  n.NKeyFile,
		Token:     n.Token,
		User:      n.User,
		Password:  n.Password,
		TLS:       tlsConfig(n.TLS),
	}
}

// kafkaConfig is the kafka block as kafkaconn (and the Kafka sink) take it.
func kafkaConfig(k config.Kafka) kafkaconn.Config {
	c := kafkaconn.Config{Brokers: k.Brokers, ClientID: k.ClientID, TLS: tlsConfig(k.TLS)}
	if s := k.SASL; s != nil {
		c.SASL = &kafkaconn.SASL{Mechanism: s.Mechanism, Username: s.Username, Password: s.Password}
	}
	return c
}

// tlsConfig is a tls block as tlsconf takes it; nil stays nil (Go's
// defaults).
func tlsConfig(t *config.TLS) *tlsconf.Config {
	if t == nil {
		return nil
	}
	return &tlsconf.Config{
		CAFile:             t.CAFile,
		CertFile:           t.CertFile,
		KeyFile:            t.KeyFile,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
}
