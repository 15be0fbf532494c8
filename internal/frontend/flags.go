package frontend

import (
	"flag"
	"time"

	"github.com/surgeml/surge/events"
)

// The protocol's limits on an upload (docs/protocol.md).
const (
	defaultMaxUpload     = 10 << 20
	defaultResultTimeout = 5 * time.Minute
)

// Flags registers the flags that set what an operator tunes in a Config
// (the upload limit, the waits, the fleet cap /status shows, the workers'
// model) and returns the Config they fill.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.Int64Var(&c.MaxUpload, "max-upload", defaultMaxUpload, "largest image accepted, bytes")
	fs.DurationVar(&c.ResultTimeout, "result-timeout", defaultResultTimeout, "how long an upload waits for its result before 504")
	fs.IntVar(&c.MaxWorkers, "max-workers", events.DefaultMaxWorkers, "the fleet's cap, shown in /status")
	fs.IntVar(&c.MinWorkers, "min-workers", 0, "the fleet's floor, shown in /status")
	fs.IntVar(&c.Receivers, "receivers", DefaultReceivers, "long polls of the response queue at once")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "open connections at most; at the cap, those longest without a request are closed (0: the descriptor limit less 512)")
	fs.IntVar(&c.MaxConnsPerClient, "max-conns-per-client", 0, "open connections from one client address at most (0: half of -max-conns)")
	fs.DurationVar(&c.KeepAlive, "keep-alive", 2*time.Minute, "how long an idle connection is kept for its next request; behind a load balancer, longer than the balancer's idle timeout")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout,
		"on SIGTERM or Ctrl-C, how long to keep answering the uploads already open (no new ones are taken) before answering those still waiting 503 with their ids; a second signal, or SIGHUP, ends it at once")
	fs.StringVar(&c.Model, "model-name", "", "the model the workers run, as their answers name it; answers recorded by another are not reused (empty learns it from the first answer)")
	return c
}
