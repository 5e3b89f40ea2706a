package main

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readDeployFiles(t *testing.T) (composeFile, string) {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return c, string(df)
}

// exactTag: a full version (1.2.3, optionally -variant) or a digest.
var exactTag = regexp.MustCompile(`^[^:@]+(:[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?)?(@sha256:[0-9a-f]{64})?$`)

func pinned(image string) bool {
	m := exactTag.FindStringSubmatch(image)
	return m != nil && (m[1] != "" || m[3] != "")
}

// TestImagesPinned: compose and Dockerfile images carry exact versions
// (or digests), never floating tags such as nats:2.11-alpine; NATS runs the
// release the tests run; the one image without version tags (distroless)
// is explained in the README with how to pin its digest.
func TestImagesPinned(t *testing.T) {
	c, df := readDeployFiles(t)
	for name, s := range c.Services {
		if s.Image == "ssebridge:local" { // built from the Dockerfile
			continue
		}
		if !pinned(s.Image) {
			t.Errorf("service %s: image %q is not pinned to an exact version", name, s.Image)
		}
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github\.com/nats-io/nats-server/v2 v([0-9.]+)\s`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no nats-server requirement")
	}
	if want := "nats:" + string(m[1]) + "-alpine"; c.Services["nats"].Image != want {
		t.Errorf("compose runs %s, the tests run nats-server %s: want %s", c.Services["nats"].Image, m[1], want)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) != 2 {
		t.Fatalf("Dockerfile FROM lines: %q", froms)
	}
	for _, f := range froms {
		img := f[1]
		switch {
		case pinned(img):
			if !strings.Contains(string(readme), "`"+img+"`") {
				t.Errorf("README does not name the build image %s", img)
			}
		case strings.HasPrefix(img, "gcr.io/distroless/"):
			if !strings.Contains(string(readme), "imagetools inspect "+img) {
				t.Errorf("%s has no version tag and the README does not say how to pin its digest", img)
			}
		default:
			t.Errorf("Dockerfile: FROM %s is not pinned", img)
		}
	}
	if g := regexp.MustCompile(`golang:(1\.[0-9]+)\.`).FindStringSubmatch(df); g == nil || !strings.Contains(string(gomod), "\ngo "+g[1]) {
		t.Errorf("the Dockerfile's Go (%q) is not go.mod's", g)
	}
}

// TestComposeVolumes: each broker keeps its data in a named volume, as the
// bridge keeps its checkpoints, so `docker compose down` (without -v) never
// leaves checkpoints pointing into emptied topics.
func TestComposeVolumes(t *testing.T) {
	c, _ := readDeployFiles(t)
	mounted := func(service, dir string) bool {
		for _, v := range c.Services[service].Volumes {
			name, path, _ := strings.Cut(v, ":")
			if _, named := c.Volumes[name]; named && strings.TrimSuffix(path, ":rw") == dir {
				return true
			}
		}
		return false
	}
	kafkaDir := c.Services["kafka"].Environment["KAFKA_LOG_DIRS"]
	if kafkaDir == "" || !mounted("kafka", kafkaDir) {
		t.Errorf("kafka's log dirs %q are not a named volume (volumes %v)", kafkaDir, c.Services["kafka"].Volumes)
	}
	natsCmd := c.Services["nats"].Command
	i := slices.Index(natsCmd, "-sd")
	if i < 0 || i+1 >= len(natsCmd) || !mounted("nats", natsCmd[i+1]) {
		t.Errorf("NATS's JetStream store (-sd) is not a named volume: command %v, volumes %v", natsCmd, c.Services["nats"].Volumes)
	}
	if !mounted("ssebridge", "/var/lib/ssebridge") {
		t.Errorf("ssebridge's data is not a named volume: %v", c.Services["ssebridge"].Volumes)
	}
}

// TestContainerHealthcheck: compose and the Dockerfile check health with
// the binary's own healthcheck command (distroless has no shell), on the
// port the image exposes, and that command exists with those flags.
func TestContainerHealthcheck(t *testing.T) {
	c, df := readDeployFiles(t)
	bin := regexp.MustCompile(`(?m)^COPY --from=build /out/ssebridge (\S+)$`).FindStringSubmatch(df)
	if bin == nil {
		t.Fatal("Dockerfile does not copy the binary")
	}
	test := c.Services["ssebridge"].Healthcheck.Test
	if len(test) < 3 || test[0] != "CMD" || test[1] != bin[1] || test[2] != "healthcheck" {
		t.Fatalf("compose ssebridge healthcheck %q, want [CMD %s healthcheck ...]", test, bin[1])
	}
	hc := regexp.MustCompile(`(?m)^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$`).FindStringSubmatch(df)
	if hc == nil {
		t.Fatal("Dockerfile has no HEALTHCHECK CMD [...]")
	}
	var dockerTest []string
	if err := yaml.Unmarshal([]byte(hc[1]), &dockerTest); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dockerTest, test[1:]) {
		t.Errorf("Dockerfile HEALTHCHECK %q, compose %q: want the same command", dockerTest, test[1:])
	}
	// The arguments are the command's flags (-h after them: parsed, then
	// help, exit 0), and probe /readyz on the exposed port.
	var stderr strings.Builder
	if code := healthcheckCommand(append(slices.Clone(test[3:]), "-h"), &strings.Builder{}, &stderr); code != 0 {
		t.Errorf("healthcheck arguments %q do not parse: %s", test[3:], stderr.String())
	}
	probe := DefaultHealthcheckURL
	if i := slices.Index(test, "-url"); i >= 0 && i+1 < len(test) {
		probe = test[i+1]
	}
	pu, err := url.Parse(probe)
	if err != nil || pu.Path != "/readyz" || !strings.Contains(df, "EXPOSE "+pu.Port()) {
		t.Errorf("healthcheck probes %s: not /readyz on the exposed port", probe)
	}
	if _, ok := commands["healthcheck"]; !ok {
		t.Error("no healthcheck command")
	}
}
