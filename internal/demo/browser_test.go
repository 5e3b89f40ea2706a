//go:build browser

package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssebridge/ssebridge/internal/testbrowser"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = testbrowser.Path

// TestBrowserStatusPage opens the demo's status page in headless Chromium
// and checks what an operator sees: the demo pipeline connected, its
// stream listed, and live events arriving in the EventSource view with
// increasing ids.
func TestBrowserStatusPage(t *testing.T) {
	// The demo stops in its cleanup, after the browser's (cleanups run in
	// reverse), so the page never sees the server vanish mid-test.
	d, _ := startDemo(t)
	b := startChromium(t, d.BaseURL()+"/")

	var state string
	b.waitFor("demo pipeline shown as connected", func() bool {
		b.eval(`(document.querySelector('tr[data-pipeline="demo"] .state') || {}).textContent || ""`, &state)
		return state == "connected"
	})
	var streamRow bool
	b.eval(`!!document.querySelector('tr[data-stream="/sse/demo"]')`, &streamRow)
	if !streamRow {
		t.Fatal("stream /sse/demo not listed")
	}
	var ids []string
	b.waitFor("5 live events", func() bool {
		b.eval(`Array.from(document.querySelectorAll('#live li')).map(li => li.dataset.id)`, &ids)
		return len(ids) >= 5
	})
	// Newest first: ids decrease down the list.
	prev := -1
	for i := len(ids) - 1; i >= 0; i-- {
		// A JetStream id is the stream sequence, then a tag.
		seq, _, _ := strings.Cut(ids[i], "-")
		n, err := strconv.Atoi(seq)
		if err != nil || n <= prev {
			t.Fatalf("live ids not increasing: %q", ids)
		}
		prev = n
	}
	var subs string
	b.waitFor("the page's own subscription counted", func() bool {
		b.eval(`(document.querySelector('tr[data-stream="/sse/demo"] .subscribers') || {}).textContent || ""`, &subs)
		return subs == "1"
	})
	var rate string
	b.waitFor("a rate shown", func() bool {
		b.eval(`(document.querySelector('tr[data-pipeline="demo"] .rate') || {}).textContent || ""`, &rate)
		f, err := strconv.ParseFloat(rate, 64)
		return err == nil && f > 0
	})

	// The charts fill from the polls: events/s per pipeline, subscribers
	// and events/s per stream, drawn by the page as inline SVG.
	type chart struct {
		Points int     `json:"points"`
		Max    float64 `json:"max"`
		Line   bool    `json:"line"`
	}
	readChart := func(sel string) chart {
		var c chart
		b.eval(`(() => { const s = document.querySelector('`+sel+` svg.spark');
			return s ? {points: +s.dataset.points, max: +s.dataset.max, line: !!s.querySelector("polyline")} : {}; })()`, &c)
		return c
	}
	b.waitFor("charts with 8 samples", func() bool {
		p := readChart(`tr[data-pipeline="demo"] .rate-chart`)
		subs := readChart(`tr[data-stream="/sse/demo"] .subscribers-chart`)
		sent := readChart(`tr[data-stream="/sse/demo"] .rate-chart`)
		return p.Points >= 8 && p.Max > 0 && p.Line && subs.Points >= 8 && subs.Max >= 1 && sent.Points >= 8 && sent.Max > 0
	})
	var age struct{ Class, Text string }
	b.eval(`(() => { const a = document.querySelector('tr[data-pipeline="demo"] .checkpoint-age .age');
		return a ? {class: a.className, text: a.textContent} : {}; })()`, &age)
	if age.Class != "badge age ok" || !regexp.MustCompile(`^[0-9]s$`).MatchString(age.Text) {
		t.Errorf("checkpoint age of a ticking demo: class %q, text %q; want a few seconds, green", age.Class, age.Text)
	}
	screenshot(t, b, "status-page.png")

	// How amber and red look: the demo's row, then two stale ones, with
	// the polls' rendering stopped so the picture holds still.
	var rows int
	b.eval(`(async () => {
		const st = await (await fetch("/api/status")).json();
		const now = Date.parse(st.time);
		const stale = (name, ago) => Object.assign({}, st.pipelines[0], {name, checkpoint_at: new Date(now - ago * 1000).toISOString()});
		st.pipelines.push(stale("amber-example", 125), stale("red-example", 3700));
		render(st);
		window.realRender = render;
		render = () => {};
		return document.querySelectorAll("#pipelines tr").length;
	})()`, &rows)
	if rows != 3 {
		t.Errorf("%d pipeline rows rendered, want 3", rows)
	}
	screenshot(t, b, "status-page-stale.png")

	// A stale checkpoint turns amber past a minute and red past five:
	// render statuses whose checkpoint is that old.
	for _, tc := range []struct {
		ago        int
		class, txt string
	}{{30, "badge age ok", "30s"}, {125, "badge age warn", "2m 5s"}, {3700, "badge age bad", "1h 1m"}} {
		var got struct{ Class, Text string }
		b.eval(fmt.Sprintf(`(() => {
			const now = Date.now();
			realRender({ready: true, time: new Date(now).toISOString(), streams: [],
				pipelines: [{name: "stale", state: "connected", sink: "nats", forwarded: 1, reconnects: 0,
					checkpoint_at: new Date(now - %d * 1000).toISOString()}]});
			const a = document.querySelector('tr[data-pipeline="stale"] .checkpoint-age .age');
			return {class: a.className, text: a.textContent};
		})()`, tc.ago), &got)
		if got.Class != tc.class || got.Text != tc.txt {
			t.Errorf("checkpoint %ds old: class %q, text %q; want %q, %q", tc.ago, got.Class, got.Text, tc.class, tc.txt)
		}
	}
}

// screenshot saves the page as a PNG in the test's artifact directory
// (kept with go test -artifacts) and checks that it decodes.
func screenshot(t *testing.T, b *chromium, name string) {
	t.Helper()
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	var shot struct {
		Data []byte `json:"data"` // base64 in JSON: decoded by encoding/json
	}
	b.call("Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	img, err := png.Decode(bytes.NewReader(shot.Data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 1400 || r.Dy() != 900 {
		t.Errorf("screenshot is %v", r)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, shot.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("SSEBRIDGE_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), shot.Data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshot: %s", path)
}

// readmeBrowserExample is the HTML of the README's "In a browser" section.
func readmeBrowserExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n### In a browser\n")
	if !ok {
		t.Fatal(`README has no "### In a browser" section`)
	}
	_, html, ok := strings.Cut(sec, "```html\n")
	if ok {
		html, _, ok = strings.Cut(html, "```")
	}
	if !ok {
		t.Fatal("no html block in README's In a browser section")
	}
	return html
}

// TestBrowserReadmeExample runs the README's browser example as written
// against a demo with the demo command's default -cors "*", from a page of
// another origin (another port) and from a file:// page, as a user who
// saved it would.
func TestBrowserReadmeExample(t *testing.T) {
	d, _ := startDemoWith(t, Options{CORS: []string{"*"}, Logger: slog.New(slog.DiscardHandler)})
	html := readmeBrowserExample(t)
	const readmeBase = "http://127.0.0.1:8080"
	if !strings.Contains(html, readmeBase+StreamPath) {
		t.Fatalf("the README example does not read the demo's stream %s%s:\n%s", readmeBase, StreamPath, html)
	}
	html = strings.ReplaceAll(html, readmeBase, d.BaseURL()) // the test's demo has its own port
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, html)
	}))
	defer page.Close()
	file := filepath.Join(t.TempDir(), "example.html")
	if err := os.WriteFile(file, []byte(html), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{page.URL + "/", "file://" + file} {
		b := startChromium(t, url)
		var items []string
		b.waitFor("3 ticks listed by the README example at "+url, func() bool {
			b.eval(`Array.from(document.querySelectorAll('#events li'), li => li.textContent)`, &items)
			return len(items) >= 3
		})
		for _, it := range items {
			id, when, _ := strings.Cut(it, " ")
			if _, err := time.Parse(time.RFC3339Nano, when); err != nil || id == "" {
				t.Errorf("item %q: want the event id and the tick's time", it)
			}
		}
	}
}

// chromium drives headless Chromium over --remote-debugging-pipe: the
// DevTools protocol as NUL-terminated JSON on fds 3 and 4, no WebSocket
// and no port needed.
type chromium struct {
	t       *testing.T
	w       io.Writer
	mu      sync.Mutex
	nextID  int
	waiters map[int]chan cdpReply
	session string
}

type cdpReply struct {
	Result json.RawMessage
	Error  json.RawMessage
}

func startChromium(t *testing.T, url string) *chromium {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("chromium not installed (apt-get install chromium): %v", err)
	}
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromiumPath, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", url)
	cmd.ExtraFiles = []*os.File{toR, fromW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toR.Close()
	fromW.Close()
	c := &chromium{t: t, w: toW, waiters: map[int]chan cdpReply{}}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.readLoop(fromR)
	}()
	t.Cleanup(func() {
		c.send("Browser.close", nil, "")
		toW.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		fromR.Close()
		<-readDone
	})

	var target string
	c.waitFor("a page target", func() bool {
		var res struct {
			TargetInfos []struct {
				TargetID string `json:"targetId"`
				Type     string `json:"type"`
			} `json:"targetInfos"`
		}
		c.call("Target.getTargets", nil, &res)
		for _, ti := range res.TargetInfos {
			if ti.Type == "page" {
				target = ti.TargetID
			}
		}
		return target != ""
	})
	var att struct {
		SessionID string `json:"sessionId"`
	}
	c.call("Target.attachToTarget", map[string]any{"targetId": target, "flatten": true}, &att)
	c.session = att.SessionID
	return c
}

func (c *chromium) readLoop(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			for id, w := range c.waiters {
				close(w)
				delete(c.waiters, id)
			}
			c.mu.Unlock()
			return
		}
		var m struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue // an event
		}
		c.mu.Lock()
		w := c.waiters[m.ID]
		delete(c.waiters, m.ID)
		c.mu.Unlock()
		if w != nil {
			w <- cdpReply{m.Result, m.Error}
		}
	}
}

func (c *chromium) send(method string, params any, session string) chan cdpReply {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	w := make(chan cdpReply, 1)
	c.waiters[id] = w
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(data, 0)); err != nil {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
		close(w)
	}
	return w
}

func (c *chromium) call(method string, params, out any) {
	c.t.Helper()
	select {
	case r, ok := <-c.send(method, params, c.session):
		if !ok {
			c.t.Fatalf("chromium %s: browser gone", method)
		}
		if r.Error != nil {
			c.t.Fatalf("chromium %s: %s", method, r.Error)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				c.t.Fatalf("chromium %s: %v", method, err)
			}
		}
	case <-time.After(30 * time.Second):
		c.t.Fatalf("chromium %s: no answer", method)
	}
}

// eval evaluates a JavaScript expression in the page into out.
func (c *chromium) eval(expr string, out any) {
	c.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails json.RawMessage `json:"exceptionDetails"`
	}
	c.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if res.ExceptionDetails != nil {
		c.t.Fatalf("eval %s: %s", expr, res.ExceptionDetails)
	}
	if len(res.Result.Value) > 0 {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			c.t.Fatalf("eval %s: %v", expr, err)
		}
	}
}

// waitFor polls cond; the deadline only bounds a failing test.
func (c *chromium) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
