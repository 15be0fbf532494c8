package frontend

import (
	"net/http"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

func TestLatencySummary(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name     string
		in       []time.Duration
		p50, max float64
	}{
		{"none", nil, 0, 0},
		{"one", []time.Duration{7 * ms}, 7, 7},
		{"odd", []time.Duration{30 * ms, 10 * ms, 20 * ms}, 20, 30},
		{"even takes the lower middle", []time.Duration{40 * ms, 10 * ms, 30 * ms, 20 * ms}, 20, 40},
		{"fractions", []time.Duration{1500 * time.Microsecond}, 1.5, 1.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			p50, maxMs := latencySummary(c.in)
			if p50 != c.p50 || maxMs != c.max {
				t.Fatalf("latencySummary = %v, %v; want %v, %v", p50, maxMs, c.p50, c.max)
			}
		})
	}
}

func statusWith(visible, inFlight, desired, running int) Status {
	var st Status
	st.RequestQueue.Counts = events.Counts{Visible: visible, InFlight: inFlight}
	st.Fleet.Desired, st.Fleet.Running = desired, running
	return st
}

func TestHistoryTalliesEachSpan(t *testing.T) {
	var h history
	t0 := time.UnixMilli(1_000_000)
	first := h.add(t0, statusWith(3, 2, 1, 0))
	if first != (HistoryPoint{At: t0.UnixMilli(), Backlog: 5, Desired: 1}) {
		t.Fatalf("first point %+v", first)
	}
	for _, a := range []struct {
		status int
		took   time.Duration
	}{
		{http.StatusOK, 100 * time.Millisecond},
		{http.StatusOK, 300 * time.Millisecond},
		{http.StatusOK, 200 * time.Millisecond},
		{http.StatusRequestEntityTooLarge, time.Millisecond},
		{http.StatusServiceUnavailable, 2 * time.Second},
		{0, time.Second},                 // client gone: nothing written
		{http.StatusAccepted, 0},         // a 2xx answer
		{http.StatusMovedPermanently, 0}, // neither
	} {
		h.record(a.status, a.took)
	}
	second := h.add(t0.Add(2*time.Second), statusWith(0, 1, 1, 1))
	want := HistoryPoint{At: t0.UnixMilli() + 2000, Backlog: 1, Desired: 1, Running: 1,
		Answers: 4, Errors: 2, Seconds: 2, P50Ms: 100, MaxMs: 300}
	if second != want {
		t.Fatalf("second point %+v, want %+v", second, want)
	}
	if r := second.AnswersPerSecond(); r != 2 {
		t.Fatalf("%v answers/s, want 2", r)
	}
	third := h.add(t0.Add(4*time.Second), statusWith(0, 0, 0, 1))
	if third.Answers != 0 || third.Errors != 0 || third.P50Ms != 0 || third.Seconds != 2 {
		t.Fatalf("the tally did not start again: %+v", third)
	}
}

func TestHistorySince(t *testing.T) {
	var h history
	if got := h.since(0); len(got.Points) != 0 || got.Status != nil || got.IntervalMs != HistoryInterval.Milliseconds() {
		t.Fatalf("empty history: %+v", got)
	}
	t0 := time.UnixMilli(5000)
	for i := range 4 {
		h.add(t0.Add(time.Duration(i)*time.Second), statusWith(i, 0, 0, 0))
	}
	for _, c := range []struct {
		since int64
		want  []int64
	}{
		{0, []int64{5000, 6000, 7000, 8000}},
		{5000, []int64{6000, 7000, 8000}},
		{6500, []int64{7000, 8000}},
		{8000, nil},
		{9000, nil},
	} {
		got := h.since(c.since)
		var at []int64
		for _, p := range got.Points {
			at = append(at, p.At)
		}
		if len(at) != len(c.want) || (len(at) > 0 && (at[0] != c.want[0] || at[len(at)-1] != c.want[len(c.want)-1])) {
			t.Errorf("since %d: %v, want %v", c.since, at, c.want)
		}
		if got.Status == nil || got.Status.RequestQueue.Visible != 3 {
			t.Errorf("since %d: latest status %+v, want the last sample's", c.since, got.Status)
		}
	}
}

func TestHistoryKeepsTheLatestPoints(t *testing.T) {
	var h history
	t0 := time.UnixMilli(0)
	for i := range historyPoints + 5 {
		h.add(t0.Add(time.Duration(i)*time.Second), statusWith(i, 0, 0, 0))
	}
	got := h.since(-1).Points
	if len(got) != historyPoints || got[0].Backlog != 5 || got[len(got)-1].Backlog != historyPoints+4 {
		t.Fatalf("%d points from backlog %d to %d; want %d from 5", len(got), got[0].Backlog, got[len(got)-1].Backlog, historyPoints)
	}
}

func TestLatenciesKeptAreBounded(t *testing.T) {
	var h history
	for range latenciesKept + 10 {
		h.record(http.StatusOK, time.Millisecond)
	}
	if len(h.latencies) != latenciesKept || h.answers != latenciesKept+10 {
		t.Fatalf("%d latencies kept for %d answers", len(h.latencies), h.answers)
	}
}

func TestSampleEvery(t *testing.T) {
	unwatched := time.Hour
	for _, c := range []struct {
		name         string
		p            HistoryPoint
		sinceWatched time.Duration
		want         time.Duration
	}{
		{"idle, unwatched", HistoryPoint{}, unwatched, idleInterval},
		{"idle, never watched", HistoryPoint{}, time.Since(time.Time{}), idleInterval},
		{"idle, page open", HistoryPoint{}, 5 * time.Second, HistoryInterval},
		{"idle, page closed a minute ago", HistoryPoint{}, watchedFor, idleInterval},
		{"backlog", HistoryPoint{Backlog: 1}, unwatched, HistoryInterval},
		{"fleet wanted", HistoryPoint{Desired: 1}, unwatched, HistoryInterval},
		{"fleet running", HistoryPoint{Running: 1}, unwatched, HistoryInterval},
		{"answers", HistoryPoint{Answers: 1}, unwatched, HistoryInterval},
		{"errors", HistoryPoint{Errors: 1}, unwatched, HistoryInterval},
	} {
		if got := sampleEvery(c.p, c.sinceWatched); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A poke reaches the sampler once, however many come before it looks.
func TestPokeWakesOnce(t *testing.T) {
	var h history
	h.poke() // no sampler yet: nothing to wake
	wake := h.wakeup()
	h.poke()
	h.watch(time.UnixMilli(42))
	select {
	case <-wake:
	default:
		t.Fatal("no wake-up after a poke")
	}
	select {
	case <-wake:
		t.Fatal("a second wake-up for pokes that came together")
	default:
	}
	if !h.watched().Equal(time.UnixMilli(42)) {
		t.Fatalf("watched at %v", h.watched())
	}
}
