package frontend_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

type jsonAnswer struct {
	ID, Stem, Label, Model string
	Score                  float64
	Cached                 bool
}

func uploadJSON(t *testing.T, url, name string, data []byte) (jsonAnswer, reply) {
	t.Helper()
	r := upload(t, url, "inputFile", name, data, "Accept", "application/json")
	var a jsonAnswer
	if r.status != 200 {
		t.Fatalf("%s: %d %s", name, r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatalf("%s: %s: %v", name, r.body, err)
	}
	return a, r
}

func (s *site) backlog(t *testing.T) int {
	t.Helper()
	c, err := s.requests.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Backlog()
}

func (s *site) status(t *testing.T) frontend.Status {
	t.Helper()
	var st frontend.Status
	r := get(t, s.url+"/status")
	if err := json.Unmarshal([]byte(r.body), &st); err != nil || r.status != 200 {
		t.Fatalf("/status: %d %s: %v", r.status, r.body, err)
	}
	return st
}

// An upload the table has the answer for (same name, same bytes, same
// model) is answered with no worker and no queue trip; the input bucket
// still gets the upload.
func TestRepeatedUploadIsAnsweredFromTheTable(t *testing.T) {
	s := newSite(t, frontend.Config{})
	stopWorker := s.worker(t)
	eagle := testenv.Photo(t, "eagle.jpg")
	first, _ := uploadJSON(t, s.url, "eagle.jpg", eagle)
	if first.Cached || first.Label != "bald eagle" {
		t.Fatalf("first upload: %+v", first)
	}
	stopWorker()
	if err := s.inputs.Delete(context.Background(), "eagle.jpg"); err != nil {
		t.Fatal(err)
	}
	again, r := uploadJSON(t, s.url, "eagle.jpg", eagle)
	if !again.Cached || again.Label != "bald eagle" || again.Stem != "eagle" || again.Model != first.Model || again.ID != r.header.Get("X-Request-Id") {
		t.Fatalf("repeated upload: %+v", again)
	}
	if plain := upload(t, s.url, "inputFile", "eagle.jpg", eagle); plain.status != 200 || plain.body != "eagle:bald eagle" {
		t.Fatalf("repeated upload, text: %d %q", plain.status, plain.body)
	}
	if n := s.backlog(t); n != 0 {
		t.Fatalf("a cached answer queued %d requests", n)
	}
	if in, err := s.inputs.Get(context.Background(), "eagle.jpg"); err != nil || !bytes.Equal(in, eagle) {
		t.Fatalf("input bucket after a cached answer: %d bytes, %v", len(in), err)
	}
	fetched := get(t, s.url+"/results/"+again.ID, "Accept", "application/json")
	if fetched.status != 200 || !strings.Contains(fetched.body, `"cached":true`) {
		t.Fatalf("GET /results of a cached answer: %d %s", fetched.status, fetched.body)
	}
	if st := s.status(t).ResultsTable; st.Hits != 2 || st.Misses != 1 || !st.Lookups.OK || st.Model != first.Model {
		t.Fatalf("/status results_table: %+v", st)
	}
}

// A new picture under an old name is classified afresh and replaces the
// recorded answer.
func TestChangedBytesUnderAnOldName(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	before, _ := uploadJSON(t, s.url, "pet.jpg", testenv.Photo(t, "eagle.jpg"))
	after, _ := uploadJSON(t, s.url, "pet.jpg", testenv.Photo(t, "dog.jpg"))
	t.Logf("pet.jpg first: %s (cached %v); with new bytes: %s (cached %v)", before.Label, before.Cached, after.Label, after.Cached)
	if before.Label != "bald eagle" || after.Label != "Alaskan Malamute" || after.Cached {
		t.Fatalf("answers %+v then %+v", before, after)
	}
	it, err := s.table.Get(context.Background(), "pet.jpg")
	if err != nil || it.Label != "Alaskan Malamute" {
		t.Fatalf("table item after the change: %+v, %v", it, err)
	}
	if again, _ := uploadJSON(t, s.url, "pet.jpg", testenv.Photo(t, "dog.jpg")); !again.Cached || again.Label != "Alaskan Malamute" {
		t.Fatalf("third upload: %+v", again)
	}
}

// An answer recorded by another model is not reused: the upload goes to
// the workers, and their answer replaces the item.
func TestAnotherModelsAnswerIsAMiss(t *testing.T) {
	s := newSite(t, frontend.Config{Model: testenv.ModelName()})
	eagle := testenv.Photo(t, "eagle.jpg")
	sum := sha256.Sum256(eagle)
	old := events.Item{Name: "eagle.jpg", Stem: "eagle", Label: "osprey", Model: "older-model", SHA256: hex.EncodeToString(sum[:]), Time: time.Now()}
	if err := s.table.Put(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	done := make(chan reply, 1)
	go func() { done <- upload(t, s.url, "inputFile", "eagle.jpg", eagle) }()
	waitFor(t, func() bool { return s.backlog(t) == 1 })
	s.worker(t)
	if r := <-done; r.status != 200 || r.body != "eagle:bald eagle" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if st := s.status(t).ResultsTable; st.Hits != 0 || st.Misses != 1 {
		t.Fatalf("results_table %+v", st)
	}
	if it, err := s.table.Get(context.Background(), "eagle.jpg"); err != nil || it.Model != testenv.ModelName() || it.Label != "bald eagle" {
		t.Fatalf("item after the fresh answer: %+v, %v", it, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// With the table gone the web tier answers through the queue, and says
// so once in its log and in /status.
func TestTableOutageIsAMiss(t *testing.T) {
	var logs testenv.Buffer
	s := newSiteLogging(t, frontend.Config{Model: testenv.ModelName()}, slog.New(slog.NewTextHandler(&logs, nil)))
	s.worker(t)
	s.table.Close()
	for _, name := range []string{"a.jpg", "b.jpg", "a.jpg"} {
		if r := upload(t, s.url, "inputFile", name, testenv.Photo(t, "eagle.jpg")); r.status != 200 || !strings.HasSuffix(r.body, ":bald eagle") {
			t.Fatalf("%s with the table down: %d %q", name, r.status, r.body)
		}
	}
	st := s.status(t).ResultsTable
	if st.Lookups.OK || st.Lookups.Error == "" || st.Recording.OK || st.Hits != 0 {
		t.Fatalf("/status with the table down: %+v", st)
	}
	for _, line := range []string{"for=\"looking answers up\"", "for=\"workers recording answers\""} {
		if n := countLines(logs.String(), "results table unavailable", line); n != 1 {
			t.Errorf("%d outage lines %s, want 1:\n%s", n, line, logs.String())
		}
	}
}

// Older clients post to other paths.
func TestUploadOnAnyPath(t *testing.T) {
	s := newSite(t, frontend.Config{})
	s.worker(t)
	for _, path := range []string{"/upload.php", "/api/v1/classify"} {
		if r := upload(t, s.url+path, "myfile", "eagle.jpg", testenv.Photo(t, "eagle.jpg")); r.status != 200 || r.body != "eagle:bald eagle" {
			t.Errorf("POST %s: %d %q", path, r.status, r.body)
		}
	}
}

func countLines(text string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
