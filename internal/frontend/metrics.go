package frontend

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/metrics"
)

// scrapeTimeout bounds the queue and fleet reads of one scrape: a queue
// that is down shows as missing samples, not as a scrape that hangs.
const scrapeTimeout = 2 * time.Second

// webMetrics counts uploads and results for GET /metrics and, when
// Config.EMF is set, for CloudWatch.
type webMetrics struct {
	reg        *prometheus.Registry
	uploads    *prometheus.CounterVec
	latency    prometheus.Histogram
	cached     prometheus.Counter
	resultWait prometheus.Histogram
	emf        *metrics.EMF
}

func newWebMetrics(s *Server, emf *metrics.EMF) *webMetrics {
	m := &webMetrics{
		reg: metrics.NewRegistry(),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "uploads_total",
			Help: "Uploads answered, by HTTP status (499: the client left before its answer).",
		}, []string{"status"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "upload_duration_seconds",
			Help:    "Time from an upload's arrival to its answer, whatever the answer.",
			Buckets: metrics.DefaultSecondsBuckets,
		}),
		cached: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "cached_answers_total",
			Help: "Uploads answered from the results table, with no worker.",
		}),
		resultWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Name: "result_wait_seconds",
			Help:    "How long results waited in the response queue, from the worker's send (by its clock) to a receiver taking them.",
			Buckets: metrics.DefaultSecondsBuckets,
		}),
		emf: emf,
	}
	m.reg.MustRegister(m.uploads, m.latency, m.cached, m.resultWait, newStateCollector(s))
	return m
}

// answered records an upload's answer.
func (m *webMetrics) answered(status int, took time.Duration, cached bool) {
	m.uploads.WithLabelValues(strconv.Itoa(status)).Inc()
	m.latency.Observe(took.Seconds())
	m.emf.Add(metrics.EMFUploads, 1)
	if status >= 400 {
		m.emf.Add(metrics.EMFUploadErrors, 1)
	}
	m.emf.ObserveDuration(metrics.EMFUploadLatency, took)
	if cached {
		m.cached.Inc()
		m.emf.Add(metrics.EMFCachedAnswers, 1)
	}
}

// openSample is how often the open uploads are sampled for EMF: six
// samples a minute make CloudWatch's one-minute Average the mean load, not
// one instant of it.
const openSample = 10 * time.Second

// sampleOpen records the open uploads every openSample until ctx ends.
func (s *Server) sampleOpen(ctx context.Context) {
	if s.cfg.EMF == nil {
		return
	}
	t := time.NewTicker(openSample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.cfg.EMF.Observe(metrics.EMFOpenUploads, float64(s.open.Load()))
		}
	}
}

// waited records how long a result waited in the response queue.
func (m *webMetrics) waited(d time.Duration) {
	m.resultWait.Observe(d.Seconds())
	m.emf.ObserveDuration(metrics.EMFResultWait, d)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	metrics.Handler(s.metrics.reg).ServeHTTP(w, r)
}

// stateCollector reads the queues and the fleet when scraped, as
// /status does.
type stateCollector struct {
	s                     *Server
	queue, fleet, waiting *prometheus.Desc
}

func newStateCollector(s *Server) stateCollector {
	return stateCollector{
		s: s,
		queue: prometheus.NewDesc(metrics.Namespace+"_queue_messages",
			"Approximate messages in a queue, by queue (request, response, dead_letters) and state (visible, in_flight); missing when the queue cannot be read.",
			[]string{"queue", "state"}, nil),
		fleet: prometheus.NewDesc(metrics.Namespace+"_fleet_workers",
			"Workers by state: desired (what the scaling policy asks for at the current backlog), running (every live worker, draining ones included), draining.",
			[]string{"state"}, nil),
		waiting: prometheus.NewDesc(metrics.Namespace+"_uploads_waiting",
			"Uploads holding a connection open for their answer.", nil, nil),
	}
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queue
	ch <- c.fleet
	ch <- c.waiting
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.waiters.len()))
	type queue struct {
		name   string
		counts func(context.Context) (events.Counts, error)
	}
	queues := []queue{{"request", s.Requests.Counts}, {"response", s.Responses.Counts}}
	if s.DeadLetters != nil {
		queues = append(queues, queue{"dead_letters", s.DeadLetters.Counts})
	}
	backlog, backlogKnown := 0, false
	for _, q := range queues {
		counts, err := q.counts(ctx)
		if err != nil {
			s.log.Debug("metrics: reading queue counts", "queue", q.name, "err", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(counts.Visible), q.name, "visible")
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(counts.InFlight), q.name, "in_flight")
		if q.name == "request" {
			backlog, backlogKnown = counts.Backlog(), true
		}
	}
	if backlogKnown {
		desired := events.DesiredWorkers(backlog, s.cfg.MinWorkers, s.cfg.MaxWorkers)
		ch <- prometheus.MustNewConstMetric(c.fleet, prometheus.GaugeValue, float64(desired), "desired")
	}
	instances, err := s.Fleet.List(ctx)
	if err != nil {
		s.log.Debug("metrics: listing the fleet", "err", err)
		return
	}
	draining := 0
	for _, in := range instances {
		if in.State == events.Draining {
			draining++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.fleet, prometheus.GaugeValue, float64(len(instances)), "running")
	ch <- prometheus.MustNewConstMetric(c.fleet, prometheus.GaugeValue, float64(draining), "draining")
}
