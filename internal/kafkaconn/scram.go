package kafkaconn

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// ScramHash selects the SCRAM variant.
type ScramHash int

// SCRAM variants Kafka supports.
const (
	SHA256 ScramHash = iota
	SHA512
)

// ErrScram is a SCRAM exchange that failed on the client side: a malformed
// or forged server message, or an error the server reported.
var ErrScram = errors.New("kafkaconn: SCRAM authentication failed")

// maxIterations refuses a server that would make the client spin on PBKDF2
// for minutes; Kafka's own maximum is 16384.
const maxIterations = 1 << 20

// Scram is a SCRAM-SHA-256/512 client (RFC 5802, RFC 7677) written on the
// standard library, so the bridge speaks Kafka's SCRAM without another
// dependency. Usernames are escaped as the RFC requires; passwords are used
// as given (no SASLprep), which is what Kafka's own clients do for ASCII.
type Scram struct {
	Hash     ScramHash
	Username string
	Password string
}

// Name is the SASL mechanism name Kafka expects.
func (m *Scram) Name() string {
	if m.Hash == SHA512 {
		return "SCRAM-SHA-512"
	}
	return "SCRAM-SHA-256"
}

func (m *Scram) newHash() func() hash.Hash {
	if m.Hash == SHA512 {
		return sha512.New
	}
	return sha256.New
}

// Start sends the client-first message.
func (m *Scram) Start(ctx context.Context) (sasl.StateMachine, []byte, error) {
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, nil, fmt.Errorf("scram nonce: %w", err)
	}
	user := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(m.Username)
	s := &scramSession{m: m, nonce: base64.RawStdEncoding.EncodeToString(raw[:])}
	s.clientFirstBare = "n=" + user + ",r=" + s.nonce
	return s, []byte("n,," + s.clientFirstBare), nil
}

type scramSession struct {
	m               *Scram
	nonce           string
	clientFirstBare string
	serverSignature []byte
	step            int
}

// Next answers the server-first message with the proof, then checks the
// server's signature so a man in the middle cannot pose as the broker.
func (s *scramSession) Next(ctx context.Context, challenge []byte) (bool, []byte, error) {
	s.step++
	switch s.step {
	case 1:
		resp, err := s.clientFinal(string(challenge))
		return false, resp, err
	case 2:
		attrs := parseAttrs(string(challenge))
		if e, ok := attrs["e"]; ok {
			return false, nil, fmt.Errorf("%w: server says %q", ErrScram, e)
		}
		v, err := base64.StdEncoding.DecodeString(attrs["v"])
		if err != nil || subtle.ConstantTimeCompare(v, s.serverSignature) != 1 {
			return false, nil, fmt.Errorf("%w: server signature does not verify", ErrScram)
		}
		return true, nil, nil
	}
	return false, nil, fmt.Errorf("%w: unexpected message after the exchange", ErrScram)
}

func (s *scramSession) clientFinal(serverFirst string) ([]byte, error) {
	attrs := parseAttrs(serverFirst)
	if e, ok := attrs["e"]; ok {
		return nil, fmt.Errorf("%w: server says %q", ErrScram, e)
	}
	nonce := attrs["r"]
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return nil, fmt.Errorf("%w: server nonce does not extend ours", ErrScram)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("%w: bad salt", ErrScram)
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil || iter < 1 || iter > maxIterations {
		return nil, fmt.Errorf("%w: bad iteration count %q", ErrScram, attrs["i"])
	}
	h := s.m.newHash()
	salted, err := pbkdf2.Key(h, s.m.Password, salt, iter, h().Size())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrScram, err)
	}
	clientKey := mac(h, salted, "Client Key")
	storedKey := h()
	storedKey.Write(clientKey)
	withoutProof := "c=biws,r=" + nonce // biws = base64("n,,")
	authMessage := s.clientFirstBare + "," + serverFirst + "," + withoutProof
	clientSig := mac(h, storedKey.Sum(nil), authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ clientSig[i]
	}
	s.serverSignature = mac(h, mac(h, salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func mac(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// parseAttrs splits "a=1,b=2" (values may contain '=').
func parseAttrs(s string) map[string]string {
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			if _, dup := out[k]; !dup {
				out[k] = v
			}
		}
	}
	return out
}
