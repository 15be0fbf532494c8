package frontend_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

// The page is a form that works without JavaScript, its script and style
// come from the binary, and it keeps to its own origin.
func TestPageAndItsFiles(t *testing.T) {
	s := newSite(t, frontend.Config{})
	r := get(t, s.url+"/")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{`<form id="form" method="post" enctype="multipart/form-data">`, `name="inputFile"`,
		`<script type="module" src="/web/app.js">`, `href="/web/style.css"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	for path, want := range map[string]string{"/web/app.js": "javascript", "/web/style.css": "text/css"} {
		r := get(t, s.url+path)
		if r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), want) || len(r.body) < 100 {
			t.Errorf("%s: %d %s, %d bytes", path, r.status, r.header.Get("Content-Type"), len(r.body))
		}
		// The script puts what the server says in the DOM as text only.
		if path == "/web/app.js" && strings.Contains(r.body, "innerHTML") {
			t.Errorf("app.js uses innerHTML")
		}
	}
	for _, path := range []string{"/web/", "/web/nothing.js"} {
		if r := get(t, s.url+path); r.status != 404 {
			t.Errorf("%s: %d, want 404", path, r.status)
		}
	}
}

// The history samples the status and counts the uploads answered and
// refused between samples.
func TestStatusHistory(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	if r := upload(t, s.url, "inputFile", "eagle.jpg", testenv.Photo(t, "eagle.jpg")); r.status != 200 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if r := upload(t, s.url, "inputFile", "notes.jpg", []byte("not an image")); r.status != 400 {
		t.Fatalf("bad upload: %d %s", r.status, r.body)
	}
	if r := get(t, s.url+"/status/history?since=yesterday"); r.status != 400 {
		t.Fatalf("bad since: %d %s", r.status, r.body)
	}
	var answers, errors int
	var last int64
	deadline := time.Now().Add(3 * frontend.HistoryInterval)
	for answers < 1 || errors < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after %v the history counts %d answers and %d errors, want 1 and 1", 3*frontend.HistoryInterval, answers, errors)
		}
		time.Sleep(100 * time.Millisecond)
		h := history(t, s.url, last)
		for _, p := range h.Points {
			if p.At <= last {
				t.Fatalf("point at %d returned after since=%d", p.At, last)
			}
			answers, errors, last = answers+p.Answers, errors+p.Errors, p.At
			if p.Answers > 0 && (p.P50Ms <= 0 || p.MaxMs < p.P50Ms) {
				t.Errorf("point %+v: latencies do not add up", p)
			}
		}
		if len(h.Points) > 0 && (h.Status == nil || h.Status.Fleet.Instances == nil) {
			t.Fatalf("history without the latest status: %+v", h)
		}
	}
	if answers != 1 || errors != 1 {
		t.Fatalf("%d answers and %d errors, want 1 and 1", answers, errors)
	}
}

func history(t *testing.T, url string, since int64) frontend.History {
	t.Helper()
	r := get(t, fmt.Sprintf("%s/status/history?since=%d", url, since))
	var h frontend.History
	if err := json.Unmarshal([]byte(r.body), &h); err != nil || r.status != 200 {
		t.Fatalf("history: %d %s: %v", r.status, r.body, err)
	}
	return h
}
