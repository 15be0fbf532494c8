// Fleet-size policy from docs/protocol.md, as pure
// functions shared by the local scaler and the Lambda.

package events

// DesiredWorkers returns how many workers a backlog (queued plus in-flight
// messages) calls for: none for no work, one for up to nine messages, then
// one more for every further five, never more than ceiling and never
// fewer than floor. A floor above zero keeps workers warm for users who would
// rather pay for them than wait for a boot; with floor 0 the fleet follows
// the protocol's 0 → N → 0. The ceiling wins over the floor.
func DesiredWorkers(backlog, floor, ceiling int) int {
	var n int
	switch {
	case backlog <= 0:
		n = 0
	case backlog <= 9:
		n = 1
	default:
		n = 1 + (backlog-9+4)/5
	}
	return max0(min(max(n, floor), ceiling))
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}
