// Vocabulary shared by the object store backends (the
// local filesystem, S3) and their users. Keys are always sanitised object
// keys (events.ObjectKey); backends refuse anything else.

package events

import (
	"context"
	"errors"
)

// ErrNoObject reports a Get of a key that holds no object.
var ErrNoObject = errors.New("object not found")

// Store is one bucket.
type Store interface {
	// Put stores body under key, replacing any object there. Readers see
	// the old object or the new one, never a mix.
	Put(ctx context.Context, key string, body []byte) error
	// Get returns the object under key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every key, sorted.
	List(ctx context.Context) ([]string, error)
}
