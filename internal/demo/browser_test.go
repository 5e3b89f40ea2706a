//go:build browser

package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumPath is Debian's chromium, installed by .ci/run.
const chromiumPath = "/usr/bin/chromium"

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
	c.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
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
			c.t.Fatal(fmt.Sprintf("timed out waiting for %s", what))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
