// Vocabulary shared by the worker fleet backends
// (local processes, EC2 instances), the scaler that sizes them and the web
// tier that reports on them.

package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
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
	// Ready is true once the worker has loaded its model and opened its
	// queues: it takes work. An instance that never gets there holds no
	// work, whatever its state, and is replaced after a boot deadline.
	Ready bool `json:"ready"`
	// Launched is when the instance (or process) was started; zero when
	// the backend does not know.
	Launched time.Time `json:"launched,omitzero"`
	// MetricsAddr is host:port where the worker serves GET /metrics,
	// when it does and the backend knows it (a local fleet's status
	// files tell it).
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

// ErrNoCapacity is what a CapacityError matches with errors.Is.
var ErrNoCapacity = errors.New("no capacity to launch workers")

// CapacityError is a launch refused for want of capacity: an account
// quota, or no instances of the type to be had (or offered) in any zone
// tried. It is a
// ceiling rather than a failure: what launched before it stays, and the
// same launch may succeed later without anyone changing anything.
type CapacityError struct {
	Code     string   // the provider's error code, e.g. VcpuLimitExceeded
	Message  string   // the provider's explanation
	Launched []string // the names that did launch before the refusal
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("no capacity to launch workers (%d launched first): %s: %s", len(e.Launched), e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNoCapacity) true for any CapacityError.
func (e *CapacityError) Is(target error) bool { return target == ErrNoCapacity }

// ErrLaunchStopped is what a LaunchStopped matches with errors.Is.
var ErrLaunchStopped = errors.New("launch stopped partway")

// LaunchStopped is a launch that stopped partway for a reason other than
// capacity: its caller's time ran out, or launching was no longer allowed.
// What launched before it stays; errors.Is sees through to the cause.
type LaunchStopped struct {
	Cause    error
	Launched []string // the names that did launch first
}

func (e *LaunchStopped) Error() string {
	return fmt.Sprintf("launch stopped (%d launched first): %v", len(e.Launched), e.Cause)
}

func (e *LaunchStopped) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrLaunchStopped) true for any LaunchStopped.
func (e *LaunchStopped) Is(target error) bool { return target == ErrLaunchStopped }

// DefaultPrefix names worker instances as the course graders expect.
const DefaultPrefix = "app-tier-instance-"

// InstanceName is the n-th instance name.
func InstanceName(prefix string, n int) string { return prefix + strconv.Itoa(n) }

// InstanceIndex parses the n out of a name made by Name.
func InstanceIndex(prefix, name string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
	if err != nil || !strings.HasPrefix(name, prefix) || n < 1 {
		return 0, fmt.Errorf("instance name %q is not %s<n>", name, prefix)
	}
	return n, nil
}

// CompareInstanceNames orders instance names numerically where they differ only in
// their number: app-tier-instance-2 before app-tier-instance-10.
func CompareInstanceNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
