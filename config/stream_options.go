package config

import "github.com/ssebridge/ssebridge/streams"

// Options maps the stream's block to the streams package's options: the
// one place that knows both, used by the validation (whose rules are
// streams.Config.Check) and by the runner. The Kafka cluster is the
// runner's: it needs the connection settings, not the stream's.
func (sc Stream) Options() streams.Config {
	c := streams.Config{
		Path:           sc.Path,
		Heartbeat:      sc.Heartbeat.D(),
		MaxPending:     sc.MaxPending,
		MaxSubscribers: sc.MaxSubscribers,
		WindowEvents:   sc.WindowEvents,
		WindowBytes:    sc.WindowBytes,
		Coalesce:       sc.Coalesce.D(),
	}
	if n := sc.NATS; n != nil {
		c.NATS = &streams.NATSConfig{Subject: n.Subject}
		if n.JetStream != nil {
			c.NATS.JetStream = n.JetStream.Stream
		}
	}
	if k := sc.Kafka; k != nil {
		c.Kafka = &streams.KafkaConfig{Topic: k.Topic, Start: k.Start}
	}
	if a := sc.Auth; a != nil {
		c.Auth = &streams.Auth{BearerTokens: a.BearerTokens, Cookie: a.Cookie}
		if j := a.JWT; j != nil {
			c.Auth.JWT = &streams.JWT{HS256Secret: j.HS256Secret, RS256PublicKeyFile: j.RS256PublicKeyFile, Audience: j.Audience, Claim: j.Claim}
		}
	}
	if o := sc.CORS; o != nil {
		c.CORS = &streams.CORS{AllowedOrigins: o.AllowedOrigins, AllowCredentials: o.AllowCredentials}
	}
	return c
}
