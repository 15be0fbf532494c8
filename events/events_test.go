package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestStem(t *testing.T) {
	for name, want := range map[string]string{
		"test_00.jpg":        "test_00",
		"test_65.JPEG":       "test_65",
		"archive.tar.gz":     "archive",
		"img.2024.06.jpg":    "img",
		".hidden.jpg":        ".hidden",
		"..x.jpg":            "..x",
		"noext":              "noext",
		".hidden":            ".hidden",
		"dir/sub/photo.png":  "photo",
		`C:\Users\me\a.jpeg`: "a",
		"":                   "",
		"trailingdot.":       "trailingdot",
		"with:colon.jpg":     "with:colon",
	} {
		if got := Stem(name); got != want {
			t.Errorf("Stem(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestObjectKey(t *testing.T) {
	for name, want := range map[string]string{
		"test_00.jpg":            "test_00.jpg",
		"test_65.JPEG":           "test_65.JPEG",
		"my photo (1).jpg":       "my photo (1).jpg",
		"../../etc/passwd":       "passwd",
		"..":                     "upload",
		".":                      "upload",
		"":                       "upload",
		"...hidden.jpg":          "hidden.jpg",
		`..\..\win.ini`:          "win.ini",
		"a\x00b\nc.jpg":          "a_b_c.jpg",
		"a;rm -rf *.jpg":         "a_rm -rf _.jpg",
		"ünïcødé.jpg":            "ünïcødé.jpg",
		"bad\xffutf8.jpg":        "bad_utf8.jpg",
		"q?x=1&y=<2>.jpg":        "q_x=1_y=_2_.jpg",
		strings.Repeat("é", 300): strings.Repeat("é", 127),
	} {
		got := ObjectKey(name)
		if got != want {
			t.Errorf("ObjectKey(%q) = %q, want %q", name, got, want)
		}
		if !ValidKey(got) {
			t.Errorf("ObjectKey(%q) = %q is not a valid key", name, got)
		}
	}
	for _, bad := range []string{"", "a/b", "..", ".x", "a\x00", "x\\y"} {
		if ValidKey(bad) {
			t.Errorf("ValidKey(%q) = true", bad)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	r := NewRequest("id-1", "dir/test_00.jpg", sum, at)
	if r.Name != "test_00.jpg" || r.Stem != "test_00" || r.Key != "test_00.jpg" {
		t.Fatalf("NewRequest fields: %+v", r)
	}
	body, err := EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Submitted.Equal(at) {
		t.Errorf("submitted %v, want %v", got.Submitted, at)
	}
	got.Submitted = r.Submitted
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip: got %+v, want %+v", got, r)
	}
}

func TestRequestSizeLimit(t *testing.T) {
	// The longest name whose escaped JSON still fits, and one that does not.
	fits := NewRequest("id", strings.Repeat("a", MaxNameBytes), sum, time.Now())
	body, err := EncodeRequest(fits)
	if err != nil || len(body) > MaxRequestBytes {
		t.Fatalf("255-byte name: %d bytes, %v", len(body), err)
	}
	quotes := NewRequest("id", strings.Repeat(`"`, 250)+".jpg", sum, time.Now())
	if _, err := EncodeRequest(quotes); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("escaped name: err = %v, want ErrTooLarge", err)
	}
	if _, err := DecodeRequest([]byte(strings.Repeat(" ", MaxRequestBytes+1))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized message: err = %v, want ErrTooLarge", err)
	}
}

func TestRequestValidation(t *testing.T) {
	good := NewRequest("id", "a.jpg", sum, time.Now())
	for name, mutate := range map[string]func(*Request){
		"version": func(r *Request) { r.V = 2 },
		"id":      func(r *Request) { r.ID = "" },
		"key":     func(r *Request) { r.Key = "../a.jpg" },
		"sha":     func(r *Request) { r.SHA256 = "" },
		"name":    func(r *Request) { r.Name = strings.Repeat("a", MaxNameBytes+1) },
		"reply":   func(r *Request) { r.ReplyTo = "https://sqs.example/q" },
		"reply81": func(r *Request) { r.ReplyTo = strings.Repeat("q", 81) },
	} {
		r := good
		mutate(&r)
		if _, err := EncodeRequest(r); err == nil {
			t.Errorf("%s: EncodeRequest accepted %+v", name, r)
		}
	}
	for _, body := range []string{``, `{`, `[]`, `{"v":1}`, `{"v":1,"id":"x","name":"a","stem":"a","key":"a","sha256":"` + sum + `","submitted":"2026-01-01T00:00:00Z"} {}`} {
		if _, err := DecodeRequest([]byte(body)); err == nil {
			t.Errorf("DecodeRequest(%q) accepted", body)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{V: Version, ID: "a", Stem: "test_00", Label: "Paul", Score: 0.93, Model: "m", Worker: "app-tier-instance-1", Elapsed: Millis(5400 * time.Microsecond)},
		{V: Version, ID: "b", Stem: "x", Error: &Error{Code: ErrUndecodable, Message: "unexpected EOF"}},
	} {
		body, err := EncodeResult(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeResult(body)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
	if got := (Result{Stem: "test_65", Label: "shower curtain"}).Answer(); got != "test_65:shower curtain" {
		t.Errorf("Answer() = %q", got)
	}
	for _, bad := range []Result{
		{V: Version, ID: "a"},
		{V: Version, Label: "x"},
		{V: 0, ID: "a", Label: "x"},
		{V: Version, ID: "a", Error: &Error{}},
	} {
		if _, err := EncodeResult(bad); err == nil {
			t.Errorf("EncodeResult accepted %+v", bad)
		}
	}
}

func FuzzRequest(f *testing.F) {
	for _, seed := range []string{"test_00.jpg", "../x", "", "a\x00.jpg", strings.Repeat(`\"`, 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key := ObjectKey(name)
		if !ValidKey(key) || ObjectKey(key) != key || strings.ContainsAny(key, `/\`) || len(key) > MaxNameBytes {
			t.Fatalf("ObjectKey(%q) = %q is not a stable safe key", name, key)
		}
		r := NewRequest("id", name, sum, time.Unix(0, 0))
		body, err := EncodeRequest(r)
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			if len(r.Name) > MaxNameBytes {
				return
			}
			t.Fatalf("EncodeRequest(%q): %v", name, err)
		}
		if len(body) > MaxRequestBytes || !utf8.Valid(body) {
			t.Fatalf("encoded request is %d bytes or not UTF-8", len(body))
		}
		got, err := DecodeRequest(body)
		if err != nil {
			t.Fatalf("DecodeRequest: %v", err)
		}
		got.Submitted, r.Submitted = time.Time{}, time.Time{}
		if got != r {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","stem":"s","label":"l","elapsed_ms":1.5}`))
	f.Add([]byte(`{"v":1,"id":"a","error":{"code":"undecodable","message":"m"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeResult(body)
		if err != nil {
			return
		}
		again, err := EncodeResult(r)
		if err != nil {
			t.Fatalf("a decoded result does not encode: %v", err)
		}
		if _, err := DecodeResult(again); err != nil {
			t.Fatalf("re-encoded result does not decode: %v", err)
		}
	})
}

func TestBatchErrorGroupsAlikeFailures(t *testing.T) {
	whole := errors.New("connection refused")
	e := &BatchError{Failed: map[int]error{3: whole, 1: whole, 2: errors.New("ReceiptHandleIsInvalid: bad"), 0: whole}}
	want := "4 of the batch failed: entries [0 1 3]: connection refused; entries [2]: ReceiptHandleIsInvalid: bad"
	if got := e.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestReplyQueueNames(t *testing.T) {
	n := NamesFor("surge")
	for _, c := range []struct{ queue, instance string }{
		{n.ReplyQueue("i-0abc"), "i-0abc"},
		{n.ReplyQueue("local-2-9f"), "local-2-9f"},
		{n.ResponseQueue, ""}, // the shared queue matches the prefix but is none
		{n.RequestQueue, ""},
		{"surge-resp-", ""},
		{"other-resp-i-0abc", ""},
	} {
		if got := n.ReplyInstance(c.queue); got != c.instance {
			t.Errorf("ReplyInstance(%q) = %q, want %q", c.queue, got, c.instance)
		}
	}
	for name, want := range map[string]bool{
		n.ReplyQueue("i-0abc"): true, n.ResponseQueue: false, "surge-resp-a.b": false, "other-resp-i-0abc": false,
	} {
		if got := n.IsReplyQueue(name); got != want {
			t.Errorf("IsReplyQueue(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{
		"surge-resp-i-0abc": true, "a_b-C9": true, strings.Repeat("q", 80): true,
		"": false, strings.Repeat("q", 81): false, "a.b": false, "a/b": false, "a b": false, "é": false,
	} {
		if got := ValidQueueName(name); got != want {
			t.Errorf("ValidQueueName(%q) = %v, want %v", name, got, want)
		}
	}
	if k := RequestKey("0b5f7a60-55b4-4d4f-9b43-5a6e9e0d7f00"); ObjectKey(k) == k || BaseName(k) == k {
		t.Errorf("RequestKey %q could be an uploaded name", k)
	}
	r := NewRequest("id", "a.jpg", sum, time.Now())
	r.ReplyTo = n.ReplyQueue("i-0abc")
	body, err := EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := DecodeRequest(body); err != nil || back.ReplyTo != r.ReplyTo {
		t.Errorf("reply queue lost on the wire: %+v %v", back, err)
	}
}
