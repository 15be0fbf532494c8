// This file keeps a bucket in a local directory, one file per key.
// Writes go to a hidden temporary file that is renamed over the key, so
// readers (in any process) see whole objects only. Like the embedded queue
// (synchronous=NORMAL), it survives a killed process, not a power cut:
// syncing every object would double the web tier's cost per upload.

package embedded

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/surgeml/surge/events"
)

// Bucket is one bucket directory.
type Bucket struct {
	dir string
}

var _ events.Store = (*Bucket)(nil)

// OpenBucket returns the bucket kept in dir, creating the directory if needed.
func OpenBucket(dir string) (*Bucket, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", dir, err)
	}
	return &Bucket{dir: dir}, nil
}

func (s *Bucket) path(key string) (string, error) {
	if !events.ValidKey(key) {
		return "", fmt.Errorf("bucket %s: refusing unsanitised key %q", s.dir, key)
	}
	return filepath.Join(s.dir, key), nil
}

// Put implements events.Store.
func (s *Bucket) Put(_ context.Context, key string, body []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	// Hidden, so List never sees a half-written object; keys never start
	// with a dot.
	tmp, err := os.CreateTemp(s.dir, ".put-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	_, err = tmp.Write(body)
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// Get implements events.Store.
func (s *Bucket) Get(_ context.Context, key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	body, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", p, events.ErrNoObject)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return body, nil
}

// Delete implements events.Store.
func (s *Bucket) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", p, err)
	}
	return nil
}

// List implements events.Store. Writes in progress (hidden files) are not
// objects yet and are skipped.
func (s *Bucket) List(context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", s.dir, err)
	}
	var keys []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			keys = append(keys, e.Name())
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// FreeBytes is the space left to unprivileged writers on the bucket's
// file system: the web tier is not ready for uploads without room for one.
func (b *Bucket) FreeBytes() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.dir, &st); err != nil {
		return 0, fmt.Errorf("bucket %s: free space: %w", filepath.Base(b.dir), err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}
