package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

func init() {
	commands["healthcheck"] = command{
		summary: "probe a running ssebridge's /readyz: exit 0 when ready, 1 when not",
		run:     healthcheckCommand,
	}
}

const healthcheckDescription = `Asks a running ssebridge whether it is ready (GET /readyz) and exits 0 when
it answers 200, 1 otherwise, saying why on stderr. Made for container health
checks: the image has no shell, curl or wget (HEALTHCHECK CMD ["ssebridge",
"healthcheck"]).`

// DefaultHealthcheckURL is /readyz on the port the container image listens on.
const DefaultHealthcheckURL = "http://127.0.0.1:8080/readyz"

func healthcheckCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("healthcheck", "[-url URL] [-timeout DURATION] [-insecure]", healthcheckDescription, stderr)
	url := fs.String("url", DefaultHealthcheckURL, "readiness `URL` to probe")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this `duration` (not ready)")
	insecure := fs.Bool("insecure", false, "with an https URL (http.tls), accept any certificate: the probe asks the bridge next to it whether it is ready, and its certificate names the public host, not 127.0.0.1")
	if code, done := parseSubcommandFlags(fs, args); done {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "ssebridge healthcheck: -timeout must be positive")
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ssebridge healthcheck: %v\n", err)
		return 2
	}
	// No proxy: the probe is for the bridge next to it, whatever
	// HTTP_PROXY the container has for its feeds.
	tr := &http.Transport{Proxy: nil}
	if *insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for, see the flag
	}
	client := &http.Client{Transport: tr}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "ssebridge healthcheck: not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		fmt.Fprintln(stdout, "ready")
		return 0
	}
	fmt.Fprintf(stderr, "ssebridge healthcheck: not ready: %s answered %s%s\n", *url, resp.Status, notReadyDetail(body))
	return 1
}

// notReadyDetail names what /readyz reports as not ready: the brokers and
// pipelines, with their state and last error.
func notReadyDetail(body []byte) string {
	var doc struct {
		NATS *struct {
			Connected bool   `json:"connected"`
			Status    string `json:"status"`
		} `json:"nats"`
		Kafka *struct {
			Connected bool   `json:"connected"`
			Error     string `json:"error"`
		} `json:"kafka"`
		Pipelines []struct {
			Name      string `json:"name"`
			State     string `json:"state"`
			Ready     bool   `json:"ready"`
			LastError string `json:"last_error"`
		} `json:"pipelines"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	var why []string
	if doc.NATS != nil && !doc.NATS.Connected {
		why = append(why, "NATS "+doc.NATS.Status)
	}
	if doc.Kafka != nil && !doc.Kafka.Connected {
		why = append(why, strings.TrimSpace("Kafka unreachable "+doc.Kafka.Error))
	}
	for _, p := range doc.Pipelines {
		if p.Ready {
			continue
		}
		s := fmt.Sprintf("pipeline %s %s", p.Name, p.State)
		if p.LastError != "" {
			s += " (" + p.LastError + ")"
		}
		why = append(why, s)
	}
	if len(why) == 0 {
		return ""
	}
	return ": " + strings.Join(why, "; ")
}
