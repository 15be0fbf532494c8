// The web tiers' reply queues, one SQLite file each beside the other
// queues, created and deleted at run time.

package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/surgeml/surge/events"
)

// ReplyQueues are the reply queues in dir whose names start with the
// deployment's reply prefix.
type ReplyQueues struct {
	dir   string
	names events.Names

	mu     sync.Mutex
	opened map[string]openedQueue
}

type openedQueue struct {
	q    *Queue
	file os.FileInfo
}

var _ events.ReplyQueues = (*ReplyQueues)(nil)

// NewReplyQueues manages the reply queues of names in dir.
func NewReplyQueues(dir string, names events.Names) *ReplyQueues {
	return &ReplyQueues{dir: dir, names: names, opened: map[string]openedQueue{}}
}

func (r *ReplyQueues) path(name string) string { return filepath.Join(r.dir, name+".db") }

// Create implements events.ReplyQueues.
func (r *ReplyQueues) Create(ctx context.Context, name string) (events.Queue, error) {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return nil, err
	}
	return r.open(ctx, name, true)
}

// Open implements events.ReplyQueues. Every call looks at the file: a
// queue another process deleted is gone even when this one still has it
// open, since what it sent there would vanish with the unlinked file.
func (r *ReplyQueues) Open(ctx context.Context, name string) (events.Queue, error) {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return nil, err
	}
	return r.open(ctx, name, false)
}

func (r *ReplyQueues) open(ctx context.Context, name string, create bool) (*Queue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	file, err := os.Stat(r.path(name))
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return nil, fmt.Errorf("finding reply queue %s: %w", name, err)
	}
	if o, ok := r.opened[name]; ok {
		if !missing && os.SameFile(o.file, file) {
			return o.q, nil
		}
		o.q.Close()
		delete(r.opened, name)
	}
	if missing && !create {
		return nil, fmt.Errorf("finding reply queue %s: %w", name, events.ErrNoQueue)
	}
	q, err := OpenQueue(ctx, r.dir, name, QueueOptions{})
	if err != nil {
		return nil, err
	}
	if file, err = os.Stat(r.path(name)); err != nil {
		q.Close()
		return nil, fmt.Errorf("finding reply queue %s: %w", name, err)
	}
	r.opened[name] = openedQueue{q: q, file: file}
	return q, nil
}

// List implements events.ReplyQueues.
func (r *ReplyQueues) List(ctx context.Context) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(r.dir, r.names.ReplyQueuePrefix+"*.db"))
	if err != nil {
		return nil, fmt.Errorf("listing reply queues: %w", err)
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".db")
		if r.names.IsReplyQueue(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// Delete implements events.ReplyQueues: the queue's files go, whoever has
// them open.
func (r *ReplyQueues) Delete(ctx context.Context, name string) error {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.opened[name]; ok {
		o.q.Close()
		delete(r.opened, name)
	}
	var errs []error
	for _, suffix := range []string{".db", ".db-wal", ".db-shm", ".db.bell", ".tags.json"} {
		if err := os.Remove(filepath.Join(r.dir, name+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting reply queue %s: %w", name, err)
	}
	return nil
}

func (r *ReplyQueues) tagsPath(name string) string { return filepath.Join(r.dir, name+".tags.json") }

// Tags implements events.ReplyQueues; tags live in a file beside the queue.
func (r *ReplyQueues) Tags(ctx context.Context, name string) (map[string]string, error) {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(r.path(name)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the tags of %s: %w", name, events.ErrNoQueue)
	}
	tags := map[string]string{}
	b, err := os.ReadFile(r.tagsPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return tags, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &tags)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the tags of %s: %w", name, err)
	}
	return tags, nil
}

// Tag implements events.ReplyQueues.
func (r *ReplyQueues) Tag(ctx context.Context, name string, tags map[string]string) error {
	cur, err := r.Tags(ctx, name)
	if err != nil {
		return err
	}
	for k, v := range tags {
		if v == "" {
			delete(cur, k)
		} else {
			cur[k] = v
		}
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return fmt.Errorf("tagging %s: %w", name, err)
	}
	tmp := r.tagsPath(name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("tagging %s: %w", name, err)
	}
	if err := os.Rename(tmp, r.tagsPath(name)); err != nil {
		return fmt.Errorf("tagging %s: %w", name, err)
	}
	return nil
}

// Close closes the queues it opened.
func (r *ReplyQueues) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for name, o := range r.opened {
		errs = append(errs, o.q.Close())
		delete(r.opened, name)
	}
	return errors.Join(errs...)
}
