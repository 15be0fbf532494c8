package events

import (
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameBytes bounds an uploaded file name. It keeps a request message far
// below MaxRequestBytes even when every field repeats the name.
const MaxNameBytes = 255

// BaseName strips any directory part a client put in the file name, for both
// slash styles, because browsers and scripts disagree on what they send.
func BaseName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// Stem is the client-visible name of an upload: its base name up to the
// first dot ("test_00.jpg" → "test_00", "img.2024.jpg" → "img"), because
// the course's clients look answers up by filename.split('.')[0]. A name
// that starts with a dot keeps it and loses only its final extension
// (".hidden.jpg" → ".hidden"), since the first-dot rule would leave
// nothing. Clients match the stem against the Image column of their CSV,
// so it is not sanitised.
func Stem(name string) string {
	base := BaseName(name)
	if i := strings.IndexByte(base, '.'); i > 0 {
		return base[:i]
	}
	if ext := path.Ext(base); ext != "" && ext != base {
		return strings.TrimSuffix(base, ext)
	}
	return base
}

// ObjectKey turns a client-supplied name into a key that is safe in every
// bucket backend: a single path segment of letters, digits and a few
// punctuation marks, never hidden, never "." or "..", at most MaxNameBytes.
// Ordinary names such as "test_00.jpg" are returned unchanged, so the bucket
// holds the file under the name the client used.
func ObjectKey(name string) string {
	var b strings.Builder
	for _, r := range BaseName(name) {
		if r == utf8.RuneError || !keyRune(r) {
			r = '_'
		}
		if b.Len()+utf8.RuneLen(r) > MaxNameBytes {
			break
		}
		b.WriteRune(r)
	}
	key := strings.TrimLeft(b.String(), ".")
	if key == "" {
		return "upload"
	}
	return key
}

// ValidKey reports whether key is already in the form ObjectKey produces.
// Stores check it so that a key which bypassed sanitising is refused rather
// than interpreted as a path.
func ValidKey(key string) bool {
	return key != "" && ObjectKey(key) == key
}

func keyRune(r rune) bool {
	if unicode.IsLetter(r) || unicode.IsDigit(r) {
		return true
	}
	return strings.ContainsRune("-_.+=@,() ", r)
}

// Names are the cloud resource names derived from a prefix.
type Names struct {
	RequestQueue, RequestDeadLetters, ResponseQueue string
	// ReplyQueuePrefix starts every web instance's reply queue name
	// (ReplyQueue); IAM policies grant on it.
	ReplyQueuePrefix          string
	InputBucket, OutputBucket string
	LaunchTemplate            string // the workers'
	// Table is the results table: always <prefix>-dynamoDB, since table
	// names are unique only within an account and region, as the prefix
	// already makes them.
	Table string
	Fleet string // the fleet tag's value
}

// ReplyQueue is the reply queue of the web instance called instance:
// each web instance reads its own, so that with several of them none takes
// another's results (AWS's request-response pattern for SQS: one reply
// queue per requester, never shared).
func (n Names) ReplyQueue(instance string) string { return n.ReplyQueuePrefix + instance }

// ReplyInstance is the web instance whose reply queue queue is, or "" when
// queue is no reply queue of this prefix (the shared response queue is
// none).
func (n Names) ReplyInstance(queue string) string {
	id, ok := strings.CutPrefix(queue, n.ReplyQueuePrefix)
	if !ok || queue == n.ResponseQueue || id == "" {
		return ""
	}
	return id
}

// IsReplyQueue reports whether queue is one of this prefix's reply
// queues, a name SQS accepts: the backends refuse to make or touch any
// other.
func (n Names) IsReplyQueue(queue string) bool {
	return n.ReplyInstance(queue) != "" && ValidQueueName(queue)
}

// CheckReplyQueue is IsReplyQueue as the error a backend refuses the
// name with.
func (n Names) CheckReplyQueue(queue string) error {
	if !n.IsReplyQueue(queue) {
		return fmt.Errorf("%q is not a reply queue of %s*", queue, n.ReplyQueuePrefix)
	}
	return nil
}

// maxQueueName is SQS's limit on a queue name.
const maxQueueName = 80

// ValidQueueName reports whether name is a queue name SQS accepts:
// letters, digits, hyphens and underscores, at most 80 of them.
func ValidQueueName(name string) bool {
	if name == "" || len(name) > maxQueueName {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// requestKeyPrefix starts the results table's key of an answer recorded
// by request id. Uploaded names never hold a slash (BaseName), so the two
// kinds of key cannot meet.
const requestKeyPrefix = "request/"

// RequestKey is the results table's key for the answer to request id,
// which lets any web instance answer GET /results/{id}.
func RequestKey(id string) string { return requestKeyPrefix + id }

// NamesFor applies the protocol's (docs/protocol.md#names) naming to prefix, and names what it
// leaves open the same way.
func NamesFor(prefix string) Names {
	return Names{
		RequestQueue:       prefix + "-req-queue",
		RequestDeadLetters: prefix + "-req-dlq",
		ResponseQueue:      prefix + "-resp-queue",
		ReplyQueuePrefix:   prefix + "-resp-",
		InputBucket:        prefix + "-in-bucket",
		OutputBucket:       prefix + "-out-bucket",
		LaunchTemplate:     prefix + "-worker",
		Table:              prefix + "-dynamoDB",
		Fleet:              prefix,
	}
}
