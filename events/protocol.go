package events

import "time"

// The protocol's defaults (docs/protocol.md), defined here once: the CDK
// stack, the embedded backends, the scaler and the tiers all read them.
const (
	// WebPort is where the web tier takes uploads.
	WebPort = 8000

	// DefaultMaxWorkers is the fleet cap when none is configured, the
	// course rubrics' 19.
	DefaultMaxWorkers = 19
	// Course2026MaxWorkers is the cap the 2026 course grader enforces.
	Course2026MaxWorkers = 15

	// RequestVisibility is how long a received request stays hidden from
	// other workers; a worker that is still busy extends it.
	RequestVisibility = 30 * time.Second
	// MaxReceives is how many deliveries a request gets before it moves to
	// the dead-letter queue.
	MaxReceives = 5
)
