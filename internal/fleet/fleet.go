// Package fleet is the vocabulary shared by the worker fleet backends
// (local processes, EC2 instances), the scaler that sizes them and the web
// tier that reports on them.
package fleet

import (
	"fmt"
	"strconv"
	"strings"
)

// State is where an instance is in its life.
type State string

const (
	Pending  State = "pending"  // starting; counts toward the fleet
	Running  State = "running"  // taking work
	Draining State = "draining" // told to finish what it holds and leave
)

// Instance is one worker.
type Instance struct {
	Name  string `json:"name"` // app-tier-instance-<n>
	ID    string `json:"id"`   // process id or EC2 instance id
	State State  `json:"state"`
	// Idle is true when the instance reports holding no message. Only idle
	// instances are drained, so scale-in never interrupts work.
	Idle bool `json:"idle"`
}

// DefaultPrefix names worker instances as the course graders expect.
const DefaultPrefix = "app-tier-instance-"

// Name is the n-th instance name.
func Name(prefix string, n int) string { return prefix + strconv.Itoa(n) }

// Index parses the n out of a name made by Name.
func Index(prefix, name string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
	if err != nil || !strings.HasPrefix(name, prefix) || n < 1 {
		return 0, fmt.Errorf("instance name %q is not %s<n>", name, prefix)
	}
	return n, nil
}

// CompareNames orders instance names numerically where they differ only in
// their number: app-tier-instance-2 before app-tier-instance-10.
func CompareNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
