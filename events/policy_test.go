package events

import "testing"

func TestDesired(t *testing.T) {
	for _, c := range []struct{ backlog, max, want int }{
		{-1, 19, 0},
		{0, 19, 0},
		{1, 19, 1},
		{2, 19, 1},
		{9, 19, 1},
		{10, 19, 2},
		{14, 19, 2},
		{15, 19, 3},
		{19, 19, 3},
		{20, 19, 4},
		{24, 19, 4},
		{25, 19, 5},
		{94, 19, 18},
		{95, 19, 19},
		{99, 19, 19},
		{100, 19, 19},
		{1000, 19, 19},
		{100, 20, 20},
		{1 << 40, 19, 19},
		// The newest grader caps at 15.
		{69, 15, 13},
		{70, 15, 14},
		{74, 15, 14},
		{75, 15, 15},
		{76, 15, 15},
		// Caps below the policy's first step.
		{1, 1, 1},
		{50, 1, 1},
		{5, 0, 0},
		{5, -3, 0},
	} {
		if got := DesiredWorkers(c.backlog, c.max); got != c.want {
			t.Errorf("Desired(%d, %d) = %d, want %d", c.backlog, c.max, got, c.want)
		}
	}
}

// The closed form must agree with the rule as docs/protocol.md states it:
// 1 + ⌈(b − 9) / 5⌉ beyond nine, at every backlog up to well past the cap.
func TestDesiredMatchesProtocolFormula(t *testing.T) {
	for b := 10; b <= 2000; b++ {
		want := 1 + (b-9)/5
		if (b-9)%5 != 0 {
			want++
		}
		if got := DesiredWorkers(b, 1<<30); got != want {
			t.Fatalf("Desired(%d) = %d, want %d", b, got, want)
		}
	}
}
