package localrun

import (
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	fates := []Fate{
		{Stem: "a", ID: "1", Answered: true, Retried: true, Cached: true, Label: "Paul", Want: "Paul"},
		{Stem: "b", ID: "2", Answered: true, ByID: true, Label: "Bob", Want: "Bob"},
		{Stem: "c", ID: "3", Answered: true, Label: "Bob", Want: "Paul"},
		{Stem: "d", ID: "4", Failure: "422 undecodable"},
		{Stem: "e", ID: "5", Failure: "422 undecodable"},
		{Stem: "f", ID: "6", Lost: true, Failure: "still pending after 1m"},
		{Stem: "g", Lost: true, Retried: true, Failure: "connection cut before an id"},
		{Stem: "h", ID: "8", Answered: true, Label: "x"}, // no expectation: answered counts
	}
	got := Count(fates)
	if got.Sent != 8 || got.Correct != 3 || got.ByID != 1 || got.Wrong != 1 || got.Failed != 2 || got.Lost != 2 || got.Retried != 2 || got.RetriedCached != 1 {
		t.Fatalf("tally %+v", got)
	}
	if got.Reasons["422 undecodable"] != 2 || got.LostReasons["connection cut before an id"] != 1 || len(got.Examples) != 3 {
		t.Fatalf("reasons %v, lost %v, examples %v", got.Reasons, got.LostReasons, got.Examples)
	}
	if got.OK() {
		t.Fatal("a tally with wrong and lost requests is OK")
	}
	if clean := Count(fates[:2]); !clean.OK() {
		t.Fatalf("clean tally not OK: %+v", clean)
	}
	if (Tally{}).OK() {
		t.Fatal("an empty tally is OK")
	}
	var b strings.Builder
	got.Print(&b)
	for _, want := range []string{"sent", "lost", "2 × 422 undecodable", "wrong: c", "sent again after a cut connection  2  (1 of them answered from the results table)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printed tally lacks %q:\n%s", want, b.String())
		}
	}
}
