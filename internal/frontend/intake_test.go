package frontend_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/testenv"
)

// stallingHead is the repro: a chunked multipart upload that sends
// its first boundary and then nothing.
const stallingHead = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n--zz\r\n"

// dial opens a raw connection to the site, closed when the test ends.
func dial(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// form is a multipart body carrying data as field's file name.
func form(t *testing.T, field, name string, data []byte) (contentType string, body []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// head is the request line and headers of a multipart POST of length n.
func head(contentType string, n int) string {
	return fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", contentType, n)
}

// readReply reads one response from c, failing if none comes within d;
// closing says whether the server closes the connection after it.
func readReply(t *testing.T, c net.Conn, d time.Duration) (r reply, closing bool) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}, resp.Close
}

// ensureFiles makes sure this process may open n more descriptors; Go
// already raises the soft limit to the hard one at start.
func ensureFiles(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("this test needs %d open files; the hard limit is %d (ulimit -Hn)", n, lim.Max)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
	}
}

// Defect 1: 500 connections that send a body's first bytes and stall do
// not keep a normal upload from its answer.
func TestUploadAnsweredWhileBodiesStall(t *testing.T) {
	const stalled = 500
	ensureFiles(t, 2*stalled+200) // both ends of each connection are in this process
	s := newSite(t, frontend.Config{})
	s.worker(t)
	eagle := testenv.Photo(t, "eagle.jpg")
	// The first inference of a session is slower than the rest; it is not
	// what this test measures.
	if r := upload(t, s.url, "inputFile", "warm.jpg", eagle); r.status != 200 {
		t.Fatalf("warm-up: %d %q", r.status, r.body)
	}

	for range stalled {
		if _, err := io.WriteString(dial(t, s.url), stallingHead); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "/status shows every stalled upload reading", func() bool {
		return s.status(t).Uploads.Reading == stalled
	})

	contentType, body := form(t, "inputFile", "eagle.jpg", eagle)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("with %d stalled uploads: %v", stalled, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(answer) != "eagle:bald eagle" {
		t.Fatalf("with %d stalled uploads: %d %q", stalled, resp.StatusCode, answer)
	}
}

// Defect 1: a body that stalls, trickles or never ends is cut with 408,
// logged with its request id, and the connection closed; a slow body that
// keeps the pace is answered.
func TestSlowBodiesAreCut(t *testing.T) {
	var logs testenv.Buffer
	cfg := frontend.Config{BodyWindow: 500 * time.Millisecond, BodyMinBytes: 8 << 10, BodyTimeout: 4 * time.Second}
	s := newSiteLogging(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	s.worker(t)
	dog := testenv.Photo(t, "dog.jpg")
	contentType, body := form(t, "inputFile", "dog.jpg", dog)
	big := make([]byte, 9<<20)

	// send writes each piece pause apart until one fails (the server
	// closed the connection).
	send := func(c net.Conn, pause time.Duration, pieces ...[]byte) {
		for i, p := range pieces {
			if i > 0 {
				time.Sleep(pause)
			}
			if _, err := c.Write(p); err != nil {
				return
			}
		}
	}
	split := func(b []byte, size int) [][]byte {
		var out [][]byte
		for len(b) > size {
			out, b = append(out, b[:size]), b[size:]
		}
		return append(out, b)
	}
	bigType, bigBody := form(t, "inputFile", "big.jpg", append(append([]byte{}, dog...), big...))

	for _, c := range []struct {
		name   string
		send   func(net.Conn)
		status int
		reason string
	}{
		{"stalled in the form framing, chunked (the issue's repro)", func(c net.Conn) {
			io.WriteString(c, stallingHead)
		}, 408, "too slow"},
		{"stalled in the image", func(c net.Conn) {
			io.WriteString(c, head(contentType, len(body)))
			c.Write(body[:2048])
		}, 408, "too slow"},
		{"trickling below the pace", func(c net.Conn) {
			io.WriteString(c, head(contentType, len(body)))
			send(c, 100*time.Millisecond, split(body, 200)...)
		}, 408, "too slow"},
		{"keeping the pace but never done", func(c net.Conn) {
			io.WriteString(c, head(bigType, len(bigBody)))
			send(c, 100*time.Millisecond, split(bigBody, 16<<10)...)
		}, 408, "within 4s"},
		{"slow but keeping the pace", func(c net.Conn) {
			io.WriteString(c, head(contentType, len(body)))
			send(c, 100*time.Millisecond, split(body, 16<<10)...)
		}, 200, "dog:Alaskan Malamute"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			conn := dial(t, s.url)
			go c.send(conn)
			r, closing := readReply(t, conn, 15*time.Second)
			id := r.header.Get("X-Request-Id")
			if r.status != c.status || !strings.Contains(r.body, c.reason) {
				t.Fatalf("%d %q, want %d with %q", r.status, r.body, c.status, c.reason)
			}
			if c.status != 408 {
				return
			}
			if !closing {
				t.Error("a cut body leaves the connection open")
			}
			if !strings.Contains(r.body, id) || countLines(logs.String(), "id="+id, "status=408") != 1 {
				t.Errorf("request id %q not in the answer %q or not logged once with 408:\n%s", id, r.body, logs.String())
			}
		})
	}
}

// Defect 1: /status counts the uploads reading their body, and which of
// them are behind the pace.
func TestStatusShowsSlowUploads(t *testing.T) {
	s := newSite(t, frontend.Config{BodyWindow: 2 * time.Second, BodyMinBytes: 8 << 10})
	contentType, body := form(t, "inputFile", "dog.jpg", testenv.Photo(t, "dog.jpg"))
	conn := dial(t, s.url)
	io.WriteString(conn, head(contentType, len(body)))
	conn.Write(body[:2048])
	waitUntil(t, 5*time.Second, "/status shows one slow upload", func() bool {
		u := s.status(t).Uploads
		return u.Reading == 1 && u.Slow == 1
	})
	if r, _ := readReply(t, conn, 5*time.Second); r.status != 408 {
		t.Fatalf("stalled upload: %d %q", r.status, r.body)
	}
	if u := s.status(t).Uploads; u.Reading != 0 || u.Slow != 0 || u.MemoryHeld != 0 {
		t.Fatalf("after the stalled upload was cut: %+v", u)
	}
}

// Defect 5: uploads of one name with different bytes take turns, and the
// ones waiting for their turn hold their bytes inside the upload memory
// budget: further uploads wait for room, and every one is answered.
func TestSameNameUploadsStayInTheBudget(t *testing.T) {
	const budget, size, uploads = 700 << 10, 250 << 10, 6
	s := newSite(t, frontend.Config{MaxUpload: 256 << 10, UploadMemory: budget})
	dog := testenv.Photo(t, "dog.jpg")
	var wg sync.WaitGroup
	replies := make(chan reply, uploads)
	for i := range uploads {
		// Different bytes under one name: padding after the JPEG's end.
		data := append(append([]byte{}, dog...), bytes.Repeat([]byte{byte(i)}, size-len(dog))...)
		wg.Go(func() {
			r, err := tryUpload(s.url, "photo.jpg", data)
			if err != nil {
				r.body = err.Error()
			}
			replies <- r
		})
	}
	// No worker yet: one upload holds the name while waiting for its
	// answer; others hold their bytes at the name's gate, and the rest
	// wait for room in the budget.
	var last frontend.UploadsStatus
	waitUntil(t, 10*time.Second, "one upload queued and others waiting for memory", func() bool {
		st := s.status(t)
		last = st.Uploads
		if last.MemoryHeld > budget {
			t.Fatalf("uploads hold %d bytes; the budget is %d", last.MemoryHeld, budget)
		}
		return st.Waiting == 1 && last.WaitingForMemory >= 1 && last.MemoryHeld >= 2*size
	})
	s.worker(t)
	wg.Wait()
	close(replies)
	for r := range replies {
		if r.status != 200 || r.body != "photo:Alaskan Malamute" {
			t.Errorf("%d %q", r.status, r.body)
		}
	}
	u := s.status(t).Uploads
	if u.MemoryBudget != budget || u.MemoryPeak > budget || u.MemoryPeak < 2*size || u.MemoryHeld != 0 || u.WaitingForMemory != 0 {
		t.Fatalf("after every upload was answered: %+v", u)
	}
}
