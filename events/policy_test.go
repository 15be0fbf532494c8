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
		if got := DesiredWorkers(c.backlog, 0, c.max); got != c.want {
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
		if got := DesiredWorkers(b, 0, 1<<30); got != want {
			t.Fatalf("Desired(%d) = %d, want %d", b, got, want)
		}
	}
}

func TestDesiredFloor(t *testing.T) {
	for _, c := range []struct{ backlog, floor, max, want int }{
		// Floor 0 is the protocol's 0 → N → 0.
		{0, 0, 19, 0},
		{1, 0, 19, 1},
		// An always-warm worker.
		{-1, 1, 19, 1},
		{0, 1, 19, 1},
		{1, 1, 19, 1},
		{9, 1, 19, 1},
		{10, 1, 19, 2},
		{100, 1, 19, 19},
		// The floor only raises the policy's answer.
		{0, 3, 19, 3},
		{14, 3, 19, 3},
		{15, 3, 19, 3},
		{20, 3, 19, 4},
		{95, 3, 19, 19},
		// The cap wins over the floor.
		{0, 5, 2, 2},
		{100, 5, 2, 2},
		{0, 19, 19, 19},
		{0, 20, 19, 19},
		{0, 1, 0, 0},
		{0, 1, -3, 0},
		// A negative floor is no floor.
		{0, -1, 19, 0},
		{10, -1, 19, 2},
	} {
		if got := DesiredWorkers(c.backlog, c.floor, c.max); got != c.want {
			t.Errorf("Desired(%d, floor %d, max %d) = %d, want %d", c.backlog, c.floor, c.max, got, c.want)
		}
	}
}
