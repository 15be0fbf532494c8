package metrics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// emfLine is an EMF line as CloudWatch reads it.
type emfLine struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []Metric   `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	Fleet string `json:"Fleet"`
}

// parseEMF checks a line against the specification's structure and
// returns its directive's metrics and the root's members.
func parseEMF(t *testing.T, line string) ([]Metric, map[string]any) {
	t.Helper()
	var l emfLine
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		t.Fatalf("line is not JSON: %v: %s", err, line)
	}
	var root map[string]any
	json.Unmarshal([]byte(line), &root)
	if l.AWS.Timestamp == 0 || len(l.AWS.CloudWatchMetrics) != 1 {
		t.Fatalf("no _aws timestamp and one directive: %s", line)
	}
	d := l.AWS.CloudWatchMetrics[0]
	if d.Namespace != "Surge" || !slices.EqualFunc(d.Dimensions, [][]string{{"Fleet"}}, slices.Equal) || l.Fleet == "" {
		t.Fatalf("want namespace Surge, dimensions [[Fleet]] and a Fleet: %s", line)
	}
	for _, m := range d.Metrics {
		v, ok := root[m.Name]
		if !ok {
			t.Fatalf("metric %s has no member: %s", m.Name, line)
		}
		if vs, ok := v.([]any); ok && (len(vs) == 0 || len(vs) > maxValues) {
			t.Fatalf("metric %s has %d values; EMF takes 1 to %d", m.Name, len(vs), maxValues)
		}
	}
	return d.Metrics, root
}

func TestEMFFlush(t *testing.T) {
	var out bytes.Buffer
	e := NewEMF(&out, "test-fleet", WorkerEMF()...)
	e.now = func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	e.Add(EMFRecognised, 1)
	e.Add(EMFRecognised, 1)
	e.ObserveDuration(EMFInferenceTime, 12*time.Millisecond)
	e.ObserveDuration(EMFInferenceTime, 1500*time.Microsecond)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line, got %q", lines)
	}
	defs, root := parseEMF(t, lines[0])
	if want := WorkerEMF(); !slices.Equal(defs, want) {
		t.Errorf("metrics %v, want %v", defs, want)
	}
	if root[EMFRecognised] != 2.0 || root[EMFRecognitionFailed] != 0.0 || root["Fleet"] != "test-fleet" {
		t.Errorf("counts: %s", lines[0])
	}
	if vs := root[EMFInferenceTime].([]any); !slices.Equal(vs, []any{12.0, 1.5}) {
		t.Errorf("inference times %v, want [12 1.5]", vs)
	}

	// The next period starts empty: counts at zero, no distribution.
	out.Reset()
	e.Flush()
	defs, root = parseEMF(t, strings.TrimSpace(out.String()))
	if len(defs) != 2 || root[EMFRecognised] != 0.0 || root[EMFInferenceTime] != nil {
		t.Errorf("quiet period: %s", out.String())
	}
}

// Over 100 values go on further lines, every value once.
func TestEMFSplitsLongValueLists(t *testing.T) {
	var out bytes.Buffer
	e := NewEMF(&out, "f", WorkerEMF()...)
	for i := range 250 {
		e.Observe(EMFInferenceTime, float64(i))
	}
	e.Add(EMFRecognitionFailed, 3)
	e.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines for 250 values, got %d", len(lines))
	}
	var seen []any
	for i, l := range lines {
		defs, root := parseEMF(t, l)
		seen = append(seen, root[EMFInferenceTime].([]any)...)
		hasCounts := root[EMFRecognitionFailed] != nil
		if hasCounts != (i == 0) || (i == 0 && root[EMFRecognitionFailed] != 3.0) {
			t.Errorf("line %d: counts belong on the first line only, once: %v", i, defs)
		}
	}
	if len(seen) != 250 || seen[0] != 0.0 || seen[249] != 249.0 {
		t.Errorf("values across lines: %d, want 250 in order", len(seen))
	}
}

func TestOpenEMF(t *testing.T) {
	for _, dest := range []string{"udp://", "http://127.0.0.1:25888", "tcp://127.0.0.1:25888/x", "127.0.0.1:25888", "stderr"} {
		if _, err := OpenEMF(dest); err == nil {
			t.Errorf("OpenEMF(%q) took it", dest)
		}
	}
}

// Lines reach the agent's UDP and TCP endpoints, one datagram or one
// newline-ended line each, every period.
func TestEMFToAgent(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	for _, dest := range []string{"udp://" + udp.LocalAddr().String(), "tcp://" + tcp.Addr().String()} {
		e, stop, err := EMFConfig{Dest: dest, Fleet: "agent", Period: 20 * time.Millisecond, LogGroup: "surge-metrics"}.Start(ctx, log, WorkerEMF()...)
		if err != nil {
			t.Fatal(err)
		}
		e.Add(EMFRecognised, 5)
		defer stop()
	}

	buf := make([]byte, 64<<10)
	udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := udp.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, root := parseEMF(t, strings.TrimSpace(string(buf[:n]))); root[EMFRecognised] != 5.0 {
		t.Errorf("udp: %s", buf[:n])
	}

	conn, err := tcp.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if _, root := parseEMF(t, line); root[EMFRecognised] != 5.0 {
		t.Errorf("tcp: %s", line)
	}
	// The agent puts the lines in the stack's metrics group, the only one
	// the instances may write.
	for _, l := range []string{line, string(buf[:n])} {
		var meta struct {
			AWS struct{ LogGroupName string } `json:"_aws"`
		}
		if err := json.Unmarshal([]byte(l), &meta); err != nil || meta.AWS.LogGroupName != "surge-metrics" {
			t.Errorf("line without the log group: %s (%v)", l, err)
		}
	}
}
