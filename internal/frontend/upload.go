package frontend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/vision"
)

// The form fields an image may arrive in: newer clients send inputFile,
// older ones myfile.
const fileField, legacyFileField = "inputFile", "myfile"

// httpError is a failure with the status and the reason the client sees.
// cause, if set, is the failure itself: it goes to the log, since it may
// name paths, endpoints or buckets the client has no business seeing.
type httpError struct {
	status     int
	msg        string
	cause      error
	retryAfter time.Duration
	code       string // for JSON clients, when the failure has one
}

func (e *httpError) Error() string { return e.msg }

// because records the failure behind e, for the log.
func (e *httpError) because(err error) *httpError {
	e.cause = err
	return e
}

// statusClientGone marks uploads whose client left before the answer
// (nginx's 499). Nothing is written for them.
const statusClientGone = 499

func fail(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	s.open.Add(1)
	defer s.open.Add(-1)
	s.history.poke()
	id := uuid.NewString()
	w.Header().Set("X-Request-Id", id)
	log := s.log.With("id", id)

	res, cached, err := s.submit(w, r, id)
	if err == nil && res.Error != nil {
		err = resultError(res)
	}
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = fail(http.StatusInternalServerError, "internal error").because(err)
		}
		switch {
		case he.status >= 500 && he.cause != nil:
			log.Error("upload failed", "status", he.status, "reason", he.msg, "err", he.cause)
		case he.status >= 500:
			log.Error("upload failed", "status", he.status, "reason", he.msg)
		case he.status == http.StatusRequestTimeout:
			log.Warn("upload cut", "status", he.status, "reason", he.msg, "remote", r.RemoteAddr)
		default:
			log.Info("upload refused", "status", he.status, "reason", he.msg)
		}
		s.writeError(w, r, he, id)
		s.answered(he.status, s.now().Sub(start), false)
		return
	}
	log.Debug("answered", "stem", res.Stem, "label", res.Label, "cached", cached, "latency", s.now().Sub(start))
	s.writeResult(w, r, res, cached)
	s.answered(http.StatusOK, s.now().Sub(start), cached)
}

// answered counts an upload's answer for GET /metrics, CloudWatch and the
// live page's history. A client that left is no answer the page shows.
func (s *Server) answered(status int, took time.Duration, cached bool) {
	s.metrics.answered(status, took, cached)
	if status != statusClientGone {
		s.history.record(status, took)
	}
}

// submit runs one upload to its result: from the results table when it
// holds the answer for these bytes, else through the queue.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, id string) (res events.Result, cached bool, err error) {
	ctx := r.Context()
	img, err := s.readImage(w, r)
	if err != nil {
		return res, false, err
	}
	defer img.memory.release()
	sum := sha256.Sum256(img.data)
	req := events.NewRequest(id, img.name, hex.EncodeToString(sum[:]), s.now())
	req.ReplyTo = s.ReplyTo
	body, err := events.EncodeRequest(req)
	if errors.Is(err, events.ErrTooLarge) {
		return res, false, fail(http.StatusBadRequest, "file name %q is too long", img.name)
	}
	if err != nil {
		return res, false, fail(http.StatusBadRequest, "bad file name %q: %v", img.name, err)
	}

	// Waiting for an earlier upload of the name, this one still holds its
	// bytes, within the memory budget.
	if err := s.gate.acquire(ctx, req.Key, req.SHA256); err != nil {
		return res, false, fail(statusClientGone, "client went away waiting for an earlier upload of %s: %v", req.Key, err)
	}
	defer s.gate.release(req.Key)

	item, hit, pending := s.cache.lookup(ctx, req, s.now(), s.cfg.ResultTimeout)
	// The input bucket keeps every upload, answered from the table or not:
	// it is the record of what was sent (and the course's graders count it).
	if err := s.Inputs.Put(ctx, req.Key, img.data); err != nil {
		if ctx.Err() == nil {
			s.storing.observe(s.now(), err)
		}
		return res, false, unavailable("storing the image failed").because(err)
	}
	s.storing.observe(s.now(), nil)
	img.memory.release()
	img.data = nil
	if pending {
		// The same upload, queued by another instance (or this one) whose
		// client was cut off: its answer is on its way to the table.
		item, hit = s.cache.awaitRecorded(ctx, req, s.now().Add(s.cfg.ResultTimeout), s.drainOver)
		if !hit && ctx.Err() != nil {
			return res, false, fail(statusClientGone, "client went away waiting for the answer to an earlier upload of %s: %v", req.Key, context.Cause(ctx))
		}
	}
	if hit {
		res = events.Result{V: events.Version, ID: id, Stem: req.Stem, Label: item.Label, Score: item.Score, Model: item.Model}
		s.jobs.Add(id, job{stem: req.Stem, result: &res, cached: true})
		return res, true, nil
	}
	// Register before sending: a fast worker may answer before Send returns.
	answer := s.waiters.add(id)
	defer s.waiters.remove(id)
	s.expect(id, req.Stem)
	if err := s.Requests.Send(ctx, body); err != nil {
		s.jobs.Remove(id)
		return res, false, unavailable("queueing the request failed").because(err)
	}
	// Only once the request is queued: a mark for one that never was
	// would hold the same upload sent again until it expired.
	s.cache.markPending(ctx, req, s.now())
	res, err = s.await(ctx, id, answer)
	return res, false, err
}

func unavailable(format string, args ...any) *httpError {
	e := fail(http.StatusServiceUnavailable, format, args...)
	e.retryAfter = 5 * time.Second
	return e
}

// image is an uploaded image, held in memory within the budget.
type image struct {
	name   string
	data   []byte
	memory *claim
}

// errImageTooLarge is an image over Config.MaxUpload.
var errImageTooLarge = errors.New("image too large")

// growStep is the least an image's buffer grows by: a connection that
// stalls in its image holds at most this much more than it sent.
const growStep = 16 << 10

// readImage finds the image in the multipart body and checks it is one.
// Its bytes are taken from the memory budget as they arrive; the caller
// releases img.memory once it no longer holds them.
func (s *Server) readImage(w http.ResponseWriter, r *http.Request) (image, error) {
	limit := s.cfg.MaxUpload
	if r.ContentLength > limit+multipartSlack {
		return image{}, fail(http.StatusRequestEntityTooLarge, "upload is %d bytes; the limit is %d", r.ContentLength, limit)
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return image{}, fail(http.StatusBadRequest, "no file: send the image as multipart/form-data in field %q (or %q)", fileField, legacyFileField)
	}
	if r.ContentLength == 0 {
		// Go reads a body of an HTTP/1.0 request only by its
		// Content-Length: a chunked one arrives as nothing.
		if !r.ProtoAtLeast(1, 1) {
			return image{}, fail(http.StatusBadRequest, "no file: the request has no body (HTTP/1.0 needs a Content-Length; a chunked body needs HTTP/1.1)")
		}
		return image{}, fail(http.StatusBadRequest, "no file: the request has no body")
	}
	body := s.bodies.read(w, r, limit+multipartSlack)
	defer body.close()
	// The form's framing is parsed in memory outside the budget: it is
	// kept small.
	body.allow(multipartSlack)
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return image{}, fail(http.StatusBadRequest, "no file: the form has no %q (or %q) field", fileField, legacyFileField)
		}
		if err != nil {
			return image{}, s.bodyError(r, body, "reading the form", err)
		}
		if cd := part.Header.Get("Content-Disposition"); part.FormName() == "" && cd != "" {
			if _, _, err := mime.ParseMediaType(cd); err != nil {
				return image{}, fail(http.StatusBadRequest, "a part's Content-Disposition cannot be read (%v): quote the file name, escaping \\ and \" in it", err)
			}
		}
		if part.FormName() != fileField && part.FormName() != legacyFileField {
			// Other fields are skipped, not held.
			body.allow(limit + multipartSlack)
			if _, err := io.Copy(io.Discard, part); err != nil {
				return image{}, s.bodyError(r, body, "reading the form", err)
			}
			body.allow(multipartSlack)
			continue
		}
		name := part.FileName()
		if strings.TrimSpace(name) == "" {
			return image{}, fail(http.StatusBadRequest, "no file: field %q has no file name", part.FormName())
		}
		if strings.ContainsFunc(name, unicode.IsControl) {
			// Line breaks in the answer "<stem>:<label>" would forge lines.
			return image{}, fail(http.StatusBadRequest, "file name %q has control characters", name)
		}
		if strings.TrimSpace(events.Stem(name)) == "" {
			// The answer would be ":<label>", which names nothing.
			return image{}, fail(http.StatusBadRequest, "file name %q names no file: it ends in a separator or has nothing before its extension", name)
		}
		return s.takeImage(r, body, part, name)
	}
}

// takeImage reads the image in part, and the rest of the body, then
// checks the image.
func (s *Server) takeImage(r *http.Request, body *bodyReader, part io.Reader, name string) (image, error) {
	limit := s.cfg.MaxUpload
	body.allow(limit + multipartSlack)
	// A body's length bounds its image, so a small upload claims little
	// of the budget.
	claimed := limit
	if r.ContentLength >= 0 {
		claimed = min(limit, r.ContentLength)
	}
	// Half as much again: growing the buffer holds the old one and the
	// new, twice as large, at once, and the budget counts both.
	memory := s.budget.claim(claimed + claimed/2)
	kept := false
	defer func() {
		// On any failure, a panic included, the bytes go back.
		if !kept {
			memory.release()
		}
	}()
	data, err := readPart(r.Context(), part, memory, claimed, body)
	if err == nil {
		memory.settle()
		// The rest is discarded unparsed: only the body's limit applies.
		err = body.drain()
	}
	if err == nil {
		err = checkImage(name, data, s.cfg.MaxPixels)
	}
	var he *httpError
	switch {
	case errors.As(err, &he):
		return image{}, he
	case err != nil:
		return image{}, s.bodyError(r, body, "reading the image", err)
	}
	kept = true
	return image{name: name, data: data, memory: memory}, nil
}

// bodyError says why reading the body failed.
func (s *Server) bodyError(r *http.Request, body *bodyReader, doing string, err error) *httpError {
	var tooLarge *http.MaxBytesError
	switch {
	case body.missed != "":
		return fail(http.StatusRequestTimeout, "%s", body.missed)
	case errors.Is(err, errImageTooLarge):
		return fail(http.StatusRequestEntityTooLarge, "image is over the %d-byte limit", s.cfg.MaxUpload)
	case errors.As(err, &tooLarge):
		return fail(http.StatusRequestEntityTooLarge, "upload is over the %d-byte limit", s.cfg.MaxUpload)
	case errors.Is(err, errOverAllowance):
		return fail(http.StatusRequestEntityTooLarge, "the form's fields and framing are over the %d-byte limit", multipartSlack)
	case r.Context().Err() != nil:
		return fail(statusClientGone, "client went away %s: %v", doing, err)
	default:
		return fail(http.StatusBadRequest, "%s: %v", doing, err)
	}
}

// readPart reads an image into a buffer that grows as its bytes arrive,
// taking each growth from the budget first: by a quarter and at least
// growStep at a time, up to what memory claims.
func readPart(ctx context.Context, part io.Reader, memory *claim, limit int64, body *bodyReader) ([]byte, error) {
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			have := int64(cap(buf))
			if have == limit {
				// Full: a further byte puts the image over its limit.
				var probe [1]byte
				n, err := io.ReadFull(part, probe[:])
				switch {
				case n > 0:
					return nil, errImageTooLarge
				case errors.Is(err, io.EOF):
					return buf, nil
				default:
					return nil, err
				}
			}
			// Doubling, so that an image costs few copies and little
			// garbage, and straight to the limit from over a quarter of
			// it, so that the old buffer and the new always fit the claim
			// together: the new one is taken whole while the old is
			// still held, and the old given back once copied.
			grown := have + max(growStep, have)
			if 2*grown > limit {
				grown = limit
			}
			take, giveBack := grown, have
			if memory.room() < grown {
				take, giveBack = grown-have, 0
			}
			if err := body.waitForMemory(func() error { return memory.take(ctx, take) }); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, grown), buf...)
			memory.giveBack(giveBack)
		}
		n, err := part.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// checkImage checks that data is an image within the pixel limit.
func checkImage(name string, data []byte, maxPixels int) error {
	if len(data) == 0 {
		return fail(http.StatusBadRequest, "file %q is empty", name)
	}
	_, err := vision.Inspect(data, maxPixels)
	switch {
	case errors.Is(err, vision.ErrTooLarge):
		return fail(http.StatusRequestEntityTooLarge, "%s: %v", name, err)
	case err != nil:
		return fail(http.StatusBadRequest, "%s: %v", name, err)
	}
	return nil
}

// resultError maps a worker's failure to a response. Its message is shown
// when the image was at fault; for anything else it stays in the log.
func resultError(res events.Result) *httpError {
	msg := fmt.Sprintf("%s: %s", res.Stem, res.Error.Message)
	var e *httpError
	switch res.Error.Code {
	case events.ErrUndecodable, events.ErrImageTooLarge:
		e = fail(http.StatusUnprocessableEntity, "%s", msg)
	case events.ErrInputMissing:
		e = fail(http.StatusConflict, "%s", msg)
	case CodeDeadLettered:
		e = fail(http.StatusInternalServerError, "%s", msg)
	default:
		e = unavailable("%s: the workers could not process it", res.Stem).because(errors.New(msg))
	}
	e.code = string(res.Error.Code)
	return e
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// answerJSON is a success answer for clients that ask for JSON.
type answerJSON struct {
	events.Result
	// Cached is true when the results table answered, with no worker.
	Cached bool `json:"cached"`
}

func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, res events.Result, cached bool) {
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, answerJSON{res, cached})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, res.Answer())
}

// writeError answers with e's reason and the request id, if there is one.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, e *httpError, id string) {
	if e.status == statusClientGone {
		return
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter.Seconds())))
	}
	if e.status == http.StatusRequestTimeout {
		// The body was cut off: what follows on the connection cannot be
		// read as another request.
		w.Header().Set("Connection", "close")
	}
	if wantsJSON(r) {
		body := map[string]string{"id": id, "error": e.msg}
		if e.code != "" {
			body["code"] = e.code
		}
		writeJSON(w, e.status, body)
		return
	}
	msg := e.msg
	if id != "" {
		msg += " (request " + id + ")"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.status)
	io.WriteString(w, msg+"\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// nosniff keeps browsers from reading any answer as something other than
// its Content-Type says: answers echo clients' file names.
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
