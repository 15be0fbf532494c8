package metrics

import "github.com/prometheus/client_golang/prometheus"

// Scaler shows an embedded scaler's decisions (surge run's): the sizes
// it last saw and decided, and how many workers it launched and drained.
type Scaler struct {
	backlog, desired, running, draining prometheus.Gauge
	launches, drains                    prometheus.Counter
}

// NewScaler registers a scaler's collectors with reg.
func NewScaler(reg prometheus.Registerer) *Scaler {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "scaler", Name: name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "scaler", Name: name, Help: help})
	}
	s := &Scaler{
		backlog:  gauge("backlog", "Requests queued or in flight at the last decision."),
		desired:  gauge("desired_workers", "Workers the last decision wanted, after the scale-in delay."),
		running:  gauge("running_workers", "Workers taking or about to take work at the last decision, before it."),
		draining: gauge("draining_workers", "Workers leaving at the last decision, the replaced ones included."),
		launches: counter("launches_total", "Workers launched."),
		drains:   counter("drains_total", "Workers drained, for scale-in or for not becoming ready in time."),
	}
	reg.MustRegister(s.backlog, s.desired, s.running, s.draining, s.launches, s.drains)
	return s
}

// Sizes records what a decision saw and wanted.
func (s *Scaler) Sizes(backlog, desired, running, draining int) {
	s.backlog.Set(float64(backlog))
	s.desired.Set(float64(desired))
	s.running.Set(float64(running))
	s.draining.Set(float64(draining))
}

// Acted records the workers a decision launched and drained.
func (s *Scaler) Acted(launched, drained int) {
	s.launches.Add(float64(launched))
	s.drains.Add(float64(drained))
}
