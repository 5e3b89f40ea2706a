package config

import (
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDeploymentFilesAgree checks that docker-compose.yml, the Dockerfile and
// deploy/compose.yaml point at each other: no Docker engine runs here, so a
// renamed path or service would otherwise only show up for a user.
func TestDeploymentFilesAgree(t *testing.T) {
	for _, v := range []string{"NATS_URL", "KAFKA_BROKERS"} {
		if old, ok := os.LookupEnv(v); ok {
			os.Unsetenv(v)
			t.Cleanup(func() { os.Setenv(v, old) })
		}
	}
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}

	bridge, ok := compose.Services["ssebridge"]
	if !ok {
		t.Fatal("no ssebridge service")
	}
	// The compose config is mounted where the image's default command reads it.
	cmd := regexp.MustCompile(`(?m)^CMD \["run", "-config", "([^"]+)"\]`).FindSubmatch(dockerfile)
	if cmd == nil {
		t.Fatal("Dockerfile has no CMD run -config")
	}
	mount := "./deploy/compose.yaml:" + string(cmd[1]) + ":ro"
	if !slices.Contains(bridge.Volumes, mount) {
		t.Errorf("ssebridge volumes %v lack %q", bridge.Volumes, mount)
	}

	cfg, err := Load("../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The state volume is the config's data_dir and the image's volume.
	if !slices.Contains(bridge.Volumes, "ssebridge-data:"+cfg.DataDir) {
		t.Errorf("data_dir %s is not the ssebridge-data volume: %v", cfg.DataDir, bridge.Volumes)
	}
	if !strings.Contains(string(dockerfile), `VOLUME ["`+cfg.DataDir+`"]`) {
		t.Errorf("Dockerfile does not declare VOLUME %s", cfg.DataDir)
	}
	// Reachable from outside the container, on the port the image exposes.
	host, port, _ := net.SplitHostPort(cfg.HTTP.Addr)
	if host != "0.0.0.0" && host != "" {
		t.Errorf("http.addr %s is not reachable from outside the container", cfg.HTTP.Addr)
	}
	if !strings.Contains(string(dockerfile), "EXPOSE "+port) || !slices.Contains(bridge.Ports, "127.0.0.1:"+port+":"+port) {
		t.Errorf("port %s not exposed and published (ports %v)", port, bridge.Ports)
	}

	// Brokers are reached by service name, and run as the config needs.
	u, err := url.Parse(cfg.NATS.URL)
	if err != nil {
		t.Fatal(err)
	}
	nats, ok := compose.Services[u.Hostname()]
	if !ok || !slices.Contains(nats.Command, "-js") {
		t.Errorf("nats.url host %q is not a service running JetStream (-js)", u.Hostname())
	}
	if len(cfg.Kafka.Brokers) != 1 {
		t.Fatalf("kafka.brokers = %v", cfg.Kafka.Brokers)
	}
	khost, kport, _ := net.SplitHostPort(cfg.Kafka.Brokers[0])
	kafka, ok := compose.Services[khost]
	if !ok {
		t.Fatalf("kafka broker host %q is not a service", khost)
	}
	if !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("kafka is not in KRaft mode: KAFKA_PROCESS_ROLES=%q", kafka.Environment["KAFKA_PROCESS_ROLES"])
	}
	if !strings.Contains(kafka.Environment["KAFKA_ADVERTISED_LISTENERS"], "//"+khost+":"+kport) {
		t.Errorf("kafka does not advertise %s:%s: %q", khost, kport, kafka.Environment["KAFKA_ADVERTISED_LISTENERS"])
	}

	// Both brokers are fed and served back.
	kinds := map[string]int{}
	for _, p := range cfg.Pipelines {
		kinds["pipeline "+p.Sink.Kind]++
	}
	for _, s := range cfg.Streams {
		switch {
		case s.NATS != nil:
			kinds["stream nats"]++
		case s.Kafka != nil:
			kinds["stream kafka"]++
		}
	}
	for _, k := range []string{"pipeline nats", "pipeline kafka", "stream nats", "stream kafka"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/compose.yaml has no %s", k)
		}
	}
}
