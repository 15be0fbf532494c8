package webapi

import (
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

	"github.com/google/uuid"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/vision"
)

// The form fields an image may arrive in: newer clients send inputFile,
// older ones myfile.
const fileField, legacyFileField = "inputFile", "myfile"

// httpError is a failure with the status and the reason the client sees.
type httpError struct {
	status     int
	msg        string
	retryAfter time.Duration
	code       string // for JSON clients, when the failure has one
}

func (e *httpError) Error() string { return e.msg }

// statusClientGone marks uploads whose client left before the answer
// (nginx's 499). Nothing is written for them.
const statusClientGone = 499

func fail(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	id := uuid.NewString()
	w.Header().Set("X-Request-Id", id)
	log := s.log.With("id", id)

	res, cached, err := s.submit(w, r, id)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) {
			he = fail(http.StatusInternalServerError, "%v", err)
		}
		if he.status >= 500 {
			log.Error("upload failed", "status", he.status, "err", he.msg)
		} else {
			log.Info("upload refused", "status", he.status, "reason", he.msg)
		}
		s.writeError(w, r, he, id)
		return
	}
	if res.Error != nil {
		s.writeError(w, r, resultError(res), id)
		return
	}
	log.Debug("answered", "stem", res.Stem, "label", res.Label, "cached", cached, "latency", s.now().Sub(start))
	s.writeResult(w, r, res, cached)
}

// submit runs one upload to its result: from the results table when it
// holds the answer for these bytes, else through the queue.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, id string) (res events.Result, cached bool, err error) {
	ctx := r.Context()
	name, data, err := s.readImage(w, r)
	if err != nil {
		return res, false, err
	}
	sum := sha256.Sum256(data)
	req := events.NewRequest(id, name, hex.EncodeToString(sum[:]), s.now())
	body, err := events.EncodeRequest(req)
	if errors.Is(err, events.ErrTooLarge) {
		return res, false, fail(http.StatusBadRequest, "file name %q is too long", name)
	}
	if err != nil {
		return res, false, fail(http.StatusBadRequest, "bad file name %q: %v", name, err)
	}

	if err := s.gate.acquire(ctx, req.Key, req.SHA256); err != nil {
		return res, false, fail(http.StatusServiceUnavailable, "gave up waiting for an earlier upload of %s: %v", req.Key, err)
	}
	defer s.gate.release(req.Key)

	item, hit := s.cache.lookup(ctx, req)
	// The input bucket keeps every upload, answered from the table or not:
	// it is the record of what was sent (and the course's graders count it).
	if err := s.Inputs.Put(ctx, req.Key, data); err != nil {
		return res, false, unavailable("storing the image: %v", err)
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
		return res, false, unavailable("queueing the request: %v", err)
	}
	res, err = s.await(ctx, id, answer)
	return res, false, err
}

func unavailable(format string, args ...any) *httpError {
	e := fail(http.StatusServiceUnavailable, format, args...)
	e.retryAfter = 5 * time.Second
	return e
}

// readImage finds the image in the multipart body and checks it is one,
// reading at most MaxUpload bytes of it.
func (s *Server) readImage(w http.ResponseWriter, r *http.Request) (string, []byte, error) {
	limit := s.cfg.MaxUpload
	if r.ContentLength > limit+multipartSlack {
		return "", nil, fail(http.StatusRequestEntityTooLarge, "upload is %d bytes; the limit is %d", r.ContentLength, limit)
	}
	// Hold room in the upload memory budget for the whole body before
	// reading it, so a burst of large uploads waits instead of exhausting
	// memory.
	reserve := limit + multipartSlack
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	if err := s.memory.Acquire(r.Context(), reserve); err != nil {
		return "", nil, fail(statusClientGone, "client went away: %v", err)
	}
	defer s.memory.Release(reserve)
	body := http.MaxBytesReader(w, r.Body, reserve)

	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return "", nil, fail(http.StatusBadRequest, "no file: send the image as multipart/form-data in field %q (or %q)", fileField, legacyFileField)
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return "", nil, fail(http.StatusBadRequest, "no file: the form has no %q (or %q) field", fileField, legacyFileField)
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", nil, fail(http.StatusRequestEntityTooLarge, "upload is over the %d-byte limit", limit)
		}
		if err != nil {
			return "", nil, fail(http.StatusBadRequest, "reading the form: %v", err)
		}
		if part.FormName() != fileField && part.FormName() != legacyFileField {
			continue
		}
		name := part.FileName()
		data, err := io.ReadAll(io.LimitReader(part, limit+1))
		switch {
		case errors.As(err, &tooBig) || int64(len(data)) > limit:
			return "", nil, fail(http.StatusRequestEntityTooLarge, "image is over the %d-byte limit", limit)
		case err != nil:
			return "", nil, fail(http.StatusBadRequest, "reading the image: %v", err)
		case strings.TrimSpace(name) == "":
			return "", nil, fail(http.StatusBadRequest, "no file: field %q has no file name", part.FormName())
		case len(data) == 0:
			return "", nil, fail(http.StatusBadRequest, "file %q is empty", name)
		}
		_, err = vision.Inspect(data, s.cfg.MaxPixels)
		switch {
		case errors.Is(err, vision.ErrTooLarge):
			return "", nil, fail(http.StatusRequestEntityTooLarge, "%s: %v", name, err)
		case err != nil:
			return "", nil, fail(http.StatusBadRequest, "%s: %v", name, err)
		}
		return name, data, nil
	}
}

// resultError maps a worker's failure to a response.
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
		e = unavailable("%s", msg)
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

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, e *httpError, id string) {
	if e.status == statusClientGone {
		return
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter.Seconds())))
	}
	if wantsJSON(r) {
		body := map[string]string{"id": id, "error": e.msg}
		if e.code != "" {
			body["code"] = e.code
		}
		writeJSON(w, e.status, body)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	io.WriteString(w, e.msg+"\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
