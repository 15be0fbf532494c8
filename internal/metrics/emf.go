package metrics

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"time"
)

// Units of EMF metrics (CloudWatch's StandardUnit names).
const (
	Count        = "Count"
	Milliseconds = "Milliseconds"
	// Gauge is a level sampled now and then (CloudWatch's unit None):
	// like Milliseconds a distribution, its Average the mean level.
	Gauge = "None"
)

// EMFNamespace is the CloudWatch namespace of every EMF metric of
// Surge's, the scaler's included.
const EMFNamespace = "Surge"

// maxValues is the most values one EMF metric may carry in one line
// (the specification's limit on a target member's array).
const maxValues = 100

// Metric is an EMF metric: a Count is summed over the period; any other
// unit is a distribution, every value observed in the period sent as a
// value list.
type Metric struct {
	Name string
	Unit string
}

// EMF gathers a process's metrics over a period and writes them as
// CloudWatch embedded-metric-format lines, with the dimension Fleet.
// Its methods are safe for concurrent use; a nil *EMF ignores them, so
// code counts the same way whether EMF is on or not.
type EMF struct {
	w       io.Writer
	fleet   string
	metrics []Metric
	// logGroup, if set, names the log group the CloudWatch agent puts
	// the lines in (_aws.LogGroupName); without it the agent uses
	// emf/logs/default, which the instances' roles may not write.
	logGroup string
	now      func() time.Time

	mu     sync.Mutex
	counts map[string]float64
	values map[string][]float64
}

// NewEMF writes the declared metrics to w, one line per Flush.
func NewEMF(w io.Writer, fleet string, metrics ...Metric) *EMF {
	return &EMF{w: w, fleet: fleet, metrics: metrics, now: time.Now, counts: map[string]float64{}, values: map[string][]float64{}}
}

// Add adds n to the Count metric name.
func (e *EMF) Add(name string, n float64) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.counts[name] += n
	e.mu.Unlock()
}

// Observe records a value of the distribution metric name.
func (e *EMF) Observe(name string, v float64) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.values[name] = append(e.values[name], v)
	e.mu.Unlock()
}

// ObserveDuration records d in milliseconds.
func (e *EMF) ObserveDuration(name string, d time.Duration) {
	e.Observe(name, float64(d)/float64(time.Millisecond))
}

// Flush writes what was gathered since the last Flush and starts a new
// period: one line with every Count (zero included, so a quiet period
// graphs as 0, not as a gap) and up to 100 values of each distribution;
// a distribution with more values continues on further lines, as a
// target member holds at most 100.
func (e *EMF) Flush() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	counts, values := e.counts, e.values
	e.counts, e.values = map[string]float64{}, map[string][]float64{}
	e.mu.Unlock()
	ts := e.now().UnixMilli()
	first := true
	for first || len(values) > 0 {
		line := map[string]any{"Fleet": e.fleet}
		var defs []Metric
		for _, m := range e.metrics {
			if m.Unit == Count {
				if first {
					line[m.Name] = counts[m.Name]
					defs = append(defs, m)
				}
				continue
			}
			vs := values[m.Name]
			if len(vs) == 0 {
				continue
			}
			n := min(len(vs), maxValues)
			line[m.Name] = vs[:n]
			defs = append(defs, m)
			if rest := vs[n:]; len(rest) > 0 {
				values[m.Name] = rest
			} else {
				delete(values, m.Name)
			}
		}
		first = false
		if len(defs) == 0 {
			continue
		}
		meta := map[string]any{
			"Timestamp": ts,
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  EMFNamespace,
				"Dimensions": [][]string{{"Fleet"}},
				"Metrics":    defs,
			}},
		}
		if e.logGroup != "" {
			meta["LogGroupName"] = e.logGroup
		}
		line["_aws"] = meta
		b, err := json.Marshal(line)
		if err != nil {
			return fmt.Errorf("encoding metrics: %w", err)
		}
		if _, err := e.w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("writing metrics: %w", err)
		}
	}
	return nil
}

// Run flushes every period until ctx ends, then once more, so what the
// last period gathered is not lost.
func (e *EMF) Run(ctx context.Context, period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := e.Flush(); err != nil {
				log.Warn("last embedded metrics", "err", err)
			}
			return
		case <-t.C:
			if err := e.Flush(); err != nil {
				log.Warn("embedded metrics", "err", err)
			}
		}
	}
}

// EMFConfig is where and how often a process writes EMF lines.
type EMFConfig struct {
	// Dest is "" (off), "stdout", or the CloudWatch agent's endpoint,
	// "udp://host:port" or "tcp://host:port" (the agent listens on
	// 25888 for both).
	Dest   string
	Fleet  string        // the dimension Fleet's value
	Period time.Duration // how often a line is written [60s]
	// LogGroup names the log group for the CloudWatch agent to put the
	// lines in (the stack's metrics group); "" leaves it to the agent.
	LogGroup string
}

// EMFFlags registers -emf, -fleet, -emf-period and -emf-log-group.
func EMFFlags(fs *flag.FlagSet) *EMFConfig {
	c := &EMFConfig{}
	fs.StringVar(&c.Dest, "emf", "", `CloudWatch embedded-metric-format lines: "" off, "stdout", or the CloudWatch agent's endpoint, udp://127.0.0.1:25888 or tcp://127.0.0.1:25888`)
	fs.StringVar(&c.Fleet, "fleet", "surge", "the Fleet dimension of the embedded metrics")
	fs.DurationVar(&c.Period, "emf-period", time.Minute, "how often the embedded metrics are written")
	fs.StringVar(&c.LogGroup, "emf-log-group", "", "log group the CloudWatch agent puts the embedded metrics in (the stack sets its metrics group)")
	return c
}

// Start opens the destination and writes the metrics to it every
// period until ctx ends; stop waits for the last line and closes the
// destination. With Dest "" it returns a nil *EMF, which counts nothing.
func (c EMFConfig) Start(ctx context.Context, log *slog.Logger, metrics ...Metric) (e *EMF, stop func(), err error) {
	if c.Dest == "" {
		return nil, func() {}, nil
	}
	w, err := OpenEMF(c.Dest)
	if err != nil {
		return nil, nil, err
	}
	if c.Period <= 0 {
		c.Period = time.Minute
	}
	e = NewEMF(w, c.Fleet, metrics...)
	e.logGroup = c.LogGroup
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, c.Period, log)
	}()
	return e, func() { cancel(); <-done; w.Close() }, nil
}

// OpenEMF opens an EMF destination: "stdout", "udp://host:port" or
// "tcp://host:port".
func OpenEMF(dest string) (io.WriteCloser, error) {
	if dest == "stdout" {
		return nopCloser{os.Stdout}, nil
	}
	u, err := url.Parse(dest)
	if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf(`embedded metrics destination %q: want "stdout", udp://host:port or tcp://host:port`, dest)
	}
	if u.Scheme == "udp" {
		conn, err := net.Dial("udp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("embedded metrics to %s: %w", dest, err)
		}
		return conn, nil
	}
	return &tcpWriter{addr: u.Host}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// tcpWriter writes to the agent over TCP, connecting when it first
// writes and again after a failure: the agent may start after this
// process, or restart.
type tcpWriter struct {
	addr string
	mu   sync.Mutex
	conn net.Conn
}

func (t *tcpWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		conn, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		t.conn = conn
	}
	t.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	n, err := t.conn.Write(p)
	if err != nil {
		t.conn.Close()
		t.conn = nil
	}
	return n, err
}

func (t *tcpWriter) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}
