package localrun

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Fate is how one request ended, as its client finally learned it.
type Fate struct {
	Stem     string
	ID       string // empty when the web tier never said one
	Answered bool   // a 200 with a label, directly or from /results/{id}
	ByID     bool   // the label came from /results/{id}, the connection having been cut
	// Retried is set when its client sent it again after a cut
	// connection, Cached when that answer came from the results table.
	Retried, Cached bool
	Label           string
	Want            string // the expected label; empty when unknown
	// Failure is why a request got no label: a documented refusal with its
	// id ("422 undecodable"), or how it was lost.
	Failure string
	Lost    bool // accepted (or perhaps accepted) and never answered
}

// Tally sums the fates up.
type Tally struct {
	Sent, Correct, Wrong, Failed, Lost int
	ByID                               int            // answered through /results/{id}
	Retried, RetriedCached             int            // sent again after a cut connection; of those, answered from the results table
	Reasons                            map[string]int // failures (documented, with an id) by reason
	LostReasons                        map[string]int
	Examples                           []string // a few wrong or lost requests
}

// Count tallies fates.
func Count(fates []Fate) Tally {
	t := Tally{Sent: len(fates), Reasons: map[string]int{}, LostReasons: map[string]int{}}
	for _, f := range fates {
		if f.Retried {
			t.Retried++
			if f.Answered && f.Cached {
				t.RetriedCached++
			}
		}
		switch {
		case f.Answered && f.Want != "" && f.Label != f.Want:
			t.Wrong++
			t.example(fmt.Sprintf("wrong: %s (id %s) answered %q, want %q", f.Stem, f.ID, f.Label, f.Want))
		case f.Answered:
			t.Correct++
			if f.ByID {
				t.ByID++
			}
		case f.Lost:
			t.Lost++
			t.LostReasons[f.Failure]++
			t.example(fmt.Sprintf("lost: %s (id %q): %s", f.Stem, f.ID, f.Failure))
		default:
			t.Failed++
			t.Reasons[f.Failure]++
		}
	}
	return t
}

func (t *Tally) example(s string) {
	if len(t.Examples) < 10 {
		t.Examples = append(t.Examples, s)
	}
}

// OK is true when nothing was wrong and nothing was lost.
func (t Tally) OK() bool { return t.Wrong == 0 && t.Lost == 0 && t.Sent > 0 }

// Print writes the tally as a table.
func (t Tally) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "sent\t%d\n", t.Sent)
	fmt.Fprintf(tw, "correct\t%d\t(%d of them collected by id after the connection was cut)\n", t.Correct, t.ByID)
	fmt.Fprintf(tw, "sent again after a cut connection\t%d\t(%d of them answered from the results table)\n", t.Retried, t.RetriedCached)
	fmt.Fprintf(tw, "wrong\t%d\n", t.Wrong)
	fmt.Fprintf(tw, "failed with a reason and an id\t%d\t%s\n", t.Failed, reasons(t.Reasons))
	fmt.Fprintf(tw, "lost\t%d\t%s\n", t.Lost, reasons(t.LostReasons))
	tw.Flush()
	for _, e := range t.Examples {
		fmt.Fprintln(w, "  "+e)
	}
}

func reasons(m map[string]int) string {
	var parts []string
	for r, n := range m {
		parts = append(parts, fmt.Sprintf("%d × %s", n, r))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
