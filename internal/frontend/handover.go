package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/google/renameio/v2"

	"github.com/surgeml/surge/events"
)

// handoverVersion changes with the file's meaning; another version is
// refused rather than misread.
const handoverVersion = 1

// Handover carries GET /results/{id} across a restart. Results live in
// the web tier's memory, and a client sent away by a stop, or whose
// upload timed out, has only its id: a stopping web tier hands on the
// requests it still expects answers for and the answers no upload was
// waiting for, and the next one takes them over before serving. Their
// answers still come from the response queue, which the stopped web tier
// no longer reads.
type Handover struct {
	V    int         `json:"v"`
	Jobs []HandedJob `json:"jobs"`
}

// HandedJob is one request in a Handover: Result is nil while pending.
type HandedJob struct {
	ID     string         `json:"id"`
	Stem   string         `json:"stem"`
	Since  time.Time      `json:"since"`
	Result *events.Result `json:"result,omitempty"`
}

// Handover lists what the next web tier needs: pending requests and
// unclaimed answers. Call it once Serve has returned.
func (s *Server) Handover() Handover {
	h := Handover{V: handoverVersion, Jobs: []HandedJob{}}
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	for _, id := range s.jobs.Keys() {
		j, ok := s.jobs.Peek(id)
		if !ok || j.cached || j.result != nil && !j.unclaimed {
			continue
		}
		h.Jobs = append(h.Jobs, HandedJob{ID: id, Stem: j.stem, Since: j.since, Result: j.result})
	}
	return h
}

// TakeOver adds a previous web tier's jobs, except those older than
// ResultsTTL (a request pending that long is not coming back), and
// reports how many it kept. Call it before Serve.
func (s *Server) TakeOver(h Handover) int {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	kept := 0
	for _, hj := range h.Jobs {
		if s.now().Sub(hj.Since) > s.cfg.ResultsTTL {
			continue
		}
		s.jobs.Add(hj.ID, job{stem: hj.Stem, since: hj.Since, result: hj.Result, unclaimed: hj.Result != nil})
		kept++
	}
	return kept
}

// ReadHandover reads a handover file; none there is an empty handover.
func ReadHandover(path string) (Handover, error) {
	var h Handover
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("reading the handover: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("reading the handover %s: %w", path, err)
	}
	if h.V != handoverVersion {
		return Handover{}, fmt.Errorf("handover %s has version %d, want %d", path, h.V, handoverVersion)
	}
	return h, nil
}

// WriteHandover replaces the handover file at path in one step, so a
// crash mid-write leaves the previous one.
func WriteHandover(path string, h Handover) error {
	data, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encoding the handover: %w", err)
	}
	if err := renameio.WriteFile(path, data, 0o640); err != nil {
		return fmt.Errorf("writing the handover: %w", err)
	}
	return nil
}
