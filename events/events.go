// Package events is Surge's vocabulary, the one package every other one
// speaks (docs/architecture.md): the messages the tiers exchange, the
// queues, buckets, fleet and results table they exchange them through (as
// interfaces the adapters implement), the scaling policy, the resource
// names a prefix gives and the protocol's defaults (protocol.go). It does
// no I/O.
//
// Every message carries a version so that a worker and a web tier from
// different releases refuse each other's messages loudly instead of
// misreading them.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the message schema version this code writes and accepts.
const Version = 1

// MaxRequestBytes is the request queue's MaximumMessageSize. Images never
// travel in messages, only their object keys.
const MaxRequestBytes = 1024

// Request asks a worker to recognise one uploaded image.
type Request struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`   // file name as uploaded, directory parts removed
	Stem      string    `json:"stem"`   // Name without its extension; the answer's prefix
	Key       string    `json:"key"`    // object key of the image in the input bucket
	SHA256    string    `json:"sha256"` // hex digest of the image bytes the web tier stored
	Submitted time.Time `json:"submitted"`
	// ReplyTo names the reply queue of the web instance that waits for the
	// answer (Names.ReplyQueue); empty, the answer goes to the shared
	// response queue, as the course's single web tier expects.
	ReplyTo string `json:"reply_to,omitempty"`
}

// NewRequest describes an upload named name whose bytes hash to sha256hex.
func NewRequest(id, name, sha256hex string, submitted time.Time) Request {
	name = strings.ToValidUTF8(BaseName(name), "\uFFFD")
	return Request{
		V:         Version,
		ID:        id,
		Name:      name,
		Stem:      Stem(name),
		Key:       ObjectKey(name),
		SHA256:    sha256hex,
		Submitted: submitted.UTC(),
	}
}

// ErrTooLarge reports a request that would not fit in one queue message.
var ErrTooLarge = errors.New("request message exceeds the queue's size limit")

// Validate checks the fields a worker relies on.
func (r Request) Validate() error {
	switch {
	case r.V != Version:
		return fmt.Errorf("request version %d, want %d", r.V, Version)
	case r.ID == "":
		return errors.New("request has no id")
	case !utf8.ValidString(r.Name) || len(r.Name) > MaxNameBytes:
		return fmt.Errorf("request name is not UTF-8 of at most %d bytes", MaxNameBytes)
	case !ValidKey(r.Key):
		return fmt.Errorf("request key %q is not a sanitised object key", r.Key)
	case len(r.SHA256) != 64:
		return errors.New("request has no sha256 of its image")
	case r.ReplyTo != "" && !ValidQueueName(r.ReplyTo):
		return fmt.Errorf("request reply queue %q is not a queue name", r.ReplyTo)
	}
	return nil
}

// EncodeRequest validates r and returns its wire form, refusing anything the
// request queue would reject.
func EncodeRequest(r Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	body, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding request %s: %w", r.ID, err)
	}
	if len(body) > MaxRequestBytes {
		return nil, fmt.Errorf("request %s is %d bytes: %w", r.ID, len(body), ErrTooLarge)
	}
	return body, nil
}

// DecodeRequest parses and validates a request message.
func DecodeRequest(body []byte) (Request, error) {
	var r Request
	if len(body) > MaxRequestBytes {
		return r, fmt.Errorf("request message is %d bytes: %w", len(body), ErrTooLarge)
	}
	if err := unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decoding request: %w", err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("decoding request: %w", err)
	}
	return r, nil
}

// ErrorCode classifies why a request produced no label.
type ErrorCode string

const (
	// ErrUndecodable: the stored bytes are not an image the worker can read.
	// Retrying cannot help, so the web tier answers 422.
	ErrUndecodable ErrorCode = "undecodable"
	// ErrImageTooLarge: the image has more pixels than the worker takes, or
	// would take more memory to decode than it allows.
	ErrImageTooLarge ErrorCode = "image_too_large"
	// ErrInputMissing: the input object is gone or differs from what was
	// uploaded (another upload replaced it).
	ErrInputMissing ErrorCode = "input_missing"
	// ErrFailed: the worker gave up after repeated transient failures.
	ErrFailed ErrorCode = "failed"
)

// Error explains a failed recognition.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Result is a worker's answer to one Request.
type Result struct {
	V       int     `json:"v"`
	ID      string  `json:"id"`
	Stem    string  `json:"stem"`
	Label   string  `json:"label,omitempty"`
	Score   float64 `json:"score,omitempty"`
	Model   string  `json:"model,omitempty"`
	Worker  string  `json:"worker,omitempty"`
	Elapsed Millis  `json:"elapsed_ms"`
	Error   *Error  `json:"error,omitempty"`
	// Answered is when the worker sent the result, by its clock: the web
	// tier learns from it how long results wait in the response queue.
	Answered time.Time `json:"answered,omitzero"`
	// Unrecorded says why a label is missing from the results table (the
	// table was unreachable), so the web tier can report the outage.
	Unrecorded string `json:"unrecorded,omitempty"`
	// ReplyTo is the request's, so that a result which reached the shared
	// queue can still be passed on to the web instance waiting for it.
	ReplyTo string `json:"reply_to,omitempty"`
}

// Millis is a duration carried as fractional milliseconds, readable in logs
// and by other languages.
type Millis time.Duration

func (m Millis) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(m) / float64(time.Millisecond))
}

func (m *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*m = Millis(ms * float64(time.Millisecond))
	return nil
}

// Answer is the protocol's success body, "<stem>:<label>".
func (r Result) Answer() string { return r.Stem + ":" + r.Label }

// Validate checks that a result can be routed and either labels or explains.
func (r Result) Validate() error {
	switch {
	case r.V != Version:
		return fmt.Errorf("result version %d, want %d", r.V, Version)
	case r.ID == "":
		return errors.New("result has no id")
	case r.Error == nil && r.Label == "":
		return errors.New("result has neither a label nor an error")
	case r.Error != nil && r.Error.Code == "":
		return errors.New("result error has no code")
	}
	return nil
}

// EncodeResult validates r and returns its wire form.
func EncodeResult(r Result) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	body, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding result %s: %w", r.ID, err)
	}
	return body, nil
}

// DecodeResult parses and validates a result message.
func DecodeResult(body []byte) (Result, error) {
	var r Result
	if err := unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("decoding result: %w", err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("decoding result: %w", err)
	}
	return r, nil
}

// marshal writes compact JSON without HTML escaping, so names with & < >
// cost one byte each, not six.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func unmarshal(body []byte, v any) error {
	// Unknown fields are tolerated: adding a field is not a breaking change;
	// anything else bumps Version.
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after message")
	}
	return nil
}
