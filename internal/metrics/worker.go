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

// The label "outcome" of surge_worker_requests_total.
const (
	outcomeRecognised = "recognised" // answered with a label
	outcomeFailed     = "failed"     // answered with an error: the image, or its last delivery, failed for good
	outcomeRetried    = "retried"    // left for another delivery
)

// Worker counts what a worker does, for Prometheus and, if emf is not
// nil, for EMF. It is the labeling.Observer a worker is given.
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
	for _, o := range []string{outcomeRecognised, outcomeFailed, outcomeRetried} {
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

// Recognised records a request answered with a label.
func (w *Worker) Recognised() {
	w.requests.WithLabelValues(outcomeRecognised).Inc()
	w.emf.Add(EMFRecognised, 1)
}

// Failed records a request answered with an error.
func (w *Worker) Failed() {
	w.requests.WithLabelValues(outcomeFailed).Inc()
	w.emf.Add(EMFRecognitionFailed, 1)
}

// Retried records a request left for another delivery.
func (w *Worker) Retried() { w.requests.WithLabelValues(outcomeRetried).Inc() }

// Held records how many messages the worker holds.
func (w *Worker) Held(n int) {
	w.held.Set(float64(n))
	if n == 0 {
		w.idle.Set(1)
	} else {
		w.idle.Set(0)
	}
}
