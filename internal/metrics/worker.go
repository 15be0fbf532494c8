package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The worker's EMF metric names (the CDK dashboard reads them).
const (
	EMFRecognised        = "Recognised"
	EMFRecognitionFailed = "RecognitionFailed"
	EMFInferenceTime     = "InferenceTime"
)

// WorkerEMF are the worker's EMF metrics.
func WorkerEMF() []Metric {
	return []Metric{{EMFRecognised, Count}, {EMFRecognitionFailed, Count}, {EMFInferenceTime, Milliseconds}}
}

// The outcomes of a request a worker took, the label "outcome" of
// surge_worker_requests_total.
const (
	OutcomeRecognised = "recognised" // answered with a label
	OutcomeFailed     = "failed"     // answered with an error: the image, or the last delivery, failed for good
	OutcomeRetried    = "retried"    // left for another delivery
)

// Worker counts what a worker does, for Prometheus and, if emf is not
// nil, for EMF. It is what labeling.Config.Observer and Held are given.
type Worker struct {
	inference prometheus.Histogram
	requests  *prometheus.CounterVec
	held      prometheus.Gauge
	idle      prometheus.Gauge
	emf       *EMF
}

// NewWorker registers a worker's collectors with reg.
func NewWorker(reg prometheus.Registerer, emf *EMF) *Worker {
	w := &Worker{
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "inference_seconds",
			Help:    "Time to decode and recognise one image, on an inference slot.",
			Buckets: DefaultSecondsBuckets,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "requests_total",
			Help: "Requests handled, by outcome: recognised, failed (answered with an error) or retried (left for redelivery).",
		}, []string{"outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "held_messages",
			Help: "Request messages held right now: fetching, waiting for or in inference, or being answered.",
		}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "worker", Name: "idle",
			Help: "1 when the worker holds no message, else 0.",
		}),
		emf: emf,
	}
	for _, o := range []string{OutcomeRecognised, OutcomeFailed, OutcomeRetried} {
		w.requests.WithLabelValues(o) // present at 0 before the first request
	}
	w.idle.Set(1)
	reg.MustRegister(w.inference, w.requests, w.held, w.idle)
	return w
}

// Inferred records one decoding and inference that took d.
func (w *Worker) Inferred(d time.Duration) {
	w.inference.Observe(d.Seconds())
	w.emf.ObserveDuration(EMFInferenceTime, d)
}

// Handled records a request's outcome (OutcomeRecognised, ...).
func (w *Worker) Handled(outcome string) {
	w.requests.WithLabelValues(outcome).Inc()
	switch outcome {
	case OutcomeRecognised:
		w.emf.Add(EMFRecognised, 1)
	case OutcomeFailed:
		w.emf.Add(EMFRecognitionFailed, 1)
	}
}

// Held records how many messages the worker holds.
func (w *Worker) Held(n int) {
	w.held.Set(float64(n))
	if n == 0 {
		w.idle.Set(1)
	} else {
		w.idle.Set(0)
	}
}
