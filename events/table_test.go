package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

func TestAnswers(t *testing.T) {
	it := events.Item{Name: "a.jpg", Label: "Paul", Model: "m", SHA256: "abc"}
	for _, c := range []struct {
		name       string
		it         events.Item
		sha, model string
		want       bool
	}{
		{"same bytes and model", it, "abc", "m", true},
		{"new bytes under the name", it, "def", "m", false},
		{"another model", it, "abc", "m2", false},
		{"no label recorded", events.Item{SHA256: "abc", Model: "m"}, "abc", "m", false},
	} {
		if got := c.it.Answers(c.sha, c.model); got != c.want {
			t.Errorf("%s: Answers = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPending(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	mark := events.Item{Name: "a.jpg", SHA256: "abc", Time: now.Add(-time.Minute)}
	for _, c := range []struct {
		name string
		it   events.Item
		sha  string
		want bool
	}{
		{"marked a minute ago", mark, "abc", true},
		{"other bytes", mark, "def", false},
		{"answered", events.Item{Name: "a.jpg", SHA256: "abc", Label: "Paul", Time: now}, "abc", false},
		{"older than a request lives", events.Item{Name: "a.jpg", SHA256: "abc", Time: now.Add(-6 * time.Minute)}, "abc", false},
		{"no time", events.Item{Name: "a.jpg", SHA256: "abc"}, "abc", false},
	} {
		if got := c.it.Pending(c.sha, now, 5*time.Minute); got != c.want {
			t.Errorf("%s: Pending = %v, want %v", c.name, got, c.want)
		}
	}
}

// An outage is logged when it starts and when it ends, once each, however
// many calls fail in between; missing items and abandoned calls are not
// outages.
func TestHealth(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	down := errors.New("connection refused")
	notFound := fmt.Errorf("x: %w", events.ErrNoItem)
	for _, c := range []struct {
		name  string
		calls []error
		ctxs  []context.Context
		ok    bool
		lines []string
	}{
		{"all well", []error{nil, notFound, nil}, nil, true, nil},
		{"outage", []error{nil, down, down, down}, nil, false, []string{"unavailable"}},
		{"outage and recovery", []error{down, down, nil, notFound}, nil, true, []string{"unavailable", "reachable again"}},
		{"two outages", []error{down, nil, down}, nil, false, []string{"unavailable", "reachable again", "unavailable"}},
		{"caller gave up", []error{context.Canceled}, []context.Context{gone}, true, nil},
	} {
		var buf bytes.Buffer
		h := events.NewTableHealth(slog.New(slog.NewTextHandler(&buf, nil)), "testing")
		for i, err := range c.calls {
			ctx := live
			if i < len(c.ctxs) {
				ctx = c.ctxs[i]
			}
			h.Observe(ctx, err)
		}
		st := h.Status()
		if st.OK != c.ok || (st.Error != "") == c.ok {
			t.Errorf("%s: status %+v, want ok=%v", c.name, st, c.ok)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			switch {
			case strings.Contains(l, "unavailable"):
				lines = append(lines, "unavailable")
			case strings.Contains(l, "reachable again"):
				lines = append(lines, "reachable again")
			}
		}
		if fmt.Sprint(lines) != fmt.Sprint(c.lines) {
			t.Errorf("%s: logged %v, want %v", c.name, lines, c.lines)
		}
	}
}
