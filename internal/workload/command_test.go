package workload

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The course's 2026 grader reads the generator's summary with exactly these
// patterns (copied from its contract, docs/protocol.md and the issue).
var graderPatterns = map[string]*regexp.Regexp{
	"requests":      regexp.MustCompile(`Total number of requests: (\d+)`),
	"completed":     regexp.MustCompile(`Total number of requests completed successfully: (\d+)`),
	"failed":        regexp.MustCompile(`Total number of failed requests: (\d+)`),
	"correct":       regexp.MustCompile(`Total number of correct predictions : (\d+)`),
	"wrong":         regexp.MustCompile(`Total number of wrong predictions: (\d+)`),
	"response time": regexp.MustCompile(`Total response time:\s*([0-9]+\.[0-9]+)`),
	"duration":      regexp.MustCompile(`Total Test Duration:\s*([0-9]+\.[0-9]+)`),
}

// graded is what the grader reads from out: each pattern must match once.
func graded(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for name, re := range graderPatterns {
		m := re.FindAllStringSubmatch(out, -1)
		if len(m) != 1 {
			t.Fatalf("the grader's %q pattern matches %d times in:\n%s", name, len(m), out)
		}
		got[name] = m[0][1]
	}
	return got
}

// labelFile writes an Image,Results CSV.
func labelFile(t *testing.T, rows ...string) string {
	p := filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(p, []byte("Image,Results\n"+strings.Join(rows, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// bars records the progress displays the command asks for.
type bars struct {
	mu    sync.Mutex
	names []string
	last  map[string]int
}

func (b *bars) progress(what string) func(done, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.names = append(b.names, what)
	if b.last == nil {
		b.last = map[string]int{}
	}
	return func(done, total int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.last[what] = done
	}
}

// The command's stdout, read with the grader's patterns, gives the final
// outcome per file after the retry pass, and the course's lines in the
// course's order.
func TestCommandOutputReadsAsTheGraderReadsIt(t *testing.T) {
	dir, _ := images(t, "test_00.jpg", "test_01.jpg", "test_02.jpg", "test_03.jpg", "test_04.jpg", "test_05.jpg")
	labels := labelFile(t, "test_00,Paul", "test_01,Emily", "test_02,Bob", "test_03,German", "test_04,Wang", "test_05,Bill")
	for _, c := range []struct {
		name    string
		args    []string
		figures map[string]string
		lines   []string // the attempt lines, in order
	}{
		{
			name: "course flags, retried once",
			args: []string{"--num_request=5", "--image_folder=" + dir, "--prediction_file=" + labels},
			figures: map[string]string{
				"requests": "5", "completed": "5", "failed": "0", "correct": "4", "wrong": "1",
			},
			lines: []string{"Attempt-1 3/5 requests successful.", "Attempt-2 2/2 requests successful."},
		},
		{
			name: "every file, retried once",
			args: []string{"-images", dir, "-labels", labels},
			figures: map[string]string{
				"requests": "6", "completed": "5", "failed": "1", "correct": "4", "wrong": "1",
			},
			lines: []string{"Attempt-1 3/6 requests successful.", "Attempt-2 2/3 requests successful."},
		},
		{
			name: "no retries",
			args: []string{"-retries=0", "--image_folder", dir, "--prediction_file", labels},
			figures: map[string]string{
				"requests": "6", "completed": "3", "failed": "3", "correct": "2", "wrong": "1",
			},
			lines: []string{"Attempt-1 3/6 requests successful."},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A stand-in per run, so each run meets the first failures.
			url, _, _ := answering(t, map[string]reply{
				"test_00.jpg": text("test_00:Paul"),
				"test_01.jpg": failingFirst("test_01:Emily"),
				"test_02.jpg": failingFirst("test_02:Bob"),
				"test_03.jpg": text("test_03:Paul"), // wrong
				"test_04.jpg": text("test_04:Wang"),
				"test_05.jpg": unavailable, // fails every time
			})
			var stdout, stderr strings.Builder
			var b bars
			err := Command(context.Background(), append([]string{"-url", url}, c.args...), nil, &stdout, &stderr, b.progress)
			if err == nil {
				t.Error("a run with a wrong answer succeeded")
			}
			out := stdout.String()
			got := graded(t, out)
			for name, want := range c.figures {
				if got[name] != want {
					t.Errorf("%s: %s, want %s", name, got[name], want)
				}
			}
			if got["response time"] != got["duration"] {
				t.Errorf("response time %s and test duration %s differ", got["response time"], got["duration"])
			}
			var lines []string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "Attempt-") {
					lines = append(lines, strings.TrimPrefix(l, "[Workload-gen] "))
				}
			}
			if strings.Join(lines, "\n") != strings.Join(c.lines, "\n") {
				t.Errorf("attempt lines %q, want %q", lines, c.lines)
			}
			if len(b.names) != len(c.lines) || b.last["attempt 1"] == 0 {
				t.Errorf("progress displays %q (last counts %v), want one per attempt", b.names, b.last)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: %s", stderr.String())
			}
			checkCourseBlock(t, out, c.figures)
		})
	}
}

// checkCourseBlock checks out's statistics, line for line, against the
// course generator's, with "Total response time" before the duration and
// Surge's figures after the ruler.
func checkCourseBlock(t *testing.T, out string, figures map[string]string) {
	t.Helper()
	seconds := regexp.MustCompile(`: [0-9]+\.[0-9]+ \(seconds\)`)
	want := strings.Join([]string{
		"[Workload-gen] All requests have been processed or retried.",
		"[Workload-gen] ----- Workload Generator Statistics -----",
		"[Workload-gen] Total number of requests: " + figures["requests"],
		"[Workload-gen] Total number of requests completed successfully: " + figures["completed"],
		"[Workload-gen] Total number of failed requests: " + figures["failed"],
		"[Workload-gen] Total number of correct predictions : " + figures["correct"],
		"[Workload-gen] Total number of wrong predictions: " + figures["wrong"],
		"[Workload-gen] Total response time: S (seconds)",
		"[Workload-gen] Total Test Duration: S (seconds)",
		"[Workload-gen] -----------------------------------",
		"Latency of answered requests: p50 ",
	}, "\n")
	if !strings.Contains(seconds.ReplaceAllString(out, ": S (seconds)"), want) {
		t.Errorf("output lacks the course's block:\n%s\nin:\n%s", want, out)
	}
	for _, surge := range []string{"Throughput: ", "Grader's latency (total time / requests): ", "Sent again after a cut connection: 0 (0 answered from the results table)"} {
		if !strings.Contains(out, "\n"+surge) {
			t.Errorf("output lacks %q:\n%s", surge, out)
		}
	}
}

func TestCommandSucceedsWhenAllCorrect(t *testing.T) {
	dir, _ := images(t, "test_00.jpg", "test_01.jpg")
	labels := labelFile(t, "test_00,Paul", "test_01,Emily")
	url, _, _ := answering(t, map[string]reply{
		"test_00.jpg": text("test_00:Paul"),
		"test_01.jpg": failingFirst("test_01:Emily"),
	})
	var stdout strings.Builder
	if err := Command(context.Background(), []string{"-url", url, "--image_folder=" + dir, "--prediction_file=" + labels}, nil, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	got := graded(t, stdout.String())
	if got["requests"] != "2" || got["completed"] != "2" || got["failed"] != "0" || got["correct"] != "2" || got["wrong"] != "0" {
		t.Errorf("figures %v", got)
	}
}

// Without a CSV nothing is judged, and the output says so instead of
// giving the grader a figure.
func TestCommandWithoutLabels(t *testing.T) {
	dir, _ := images(t, "test_00.jpg", "test_01.jpg")
	url, _, _ := answering(t, map[string]reply{"test_00.jpg": text("test_00:Paul"), "test_01.jpg": text("test_01:Emily")})
	var stdout strings.Builder
	if err := Command(context.Background(), []string{"-url", url, "-images", dir}, nil, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"[Workload-gen] Total number of requests completed successfully: 2\n",
		"[Workload-gen] Total number of correct predictions : not checked (no prediction file)\n",
		"[Workload-gen] Total number of wrong predictions: not checked (no prediction file)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if graderPatterns["correct"].MatchString(out) || graderPatterns["wrong"].MatchString(out) {
		t.Errorf("an unchecked run gives the grader a prediction figure:\n%s", out)
	}
}

func TestCommandRefusesMoreRequestsThanImages(t *testing.T) {
	dir, _ := images(t, "a.jpg", "b.jpg")
	var stdout strings.Builder
	err := Command(context.Background(), []string{"-url", "http://127.0.0.1:1/", "--num_request=3", "--image_folder=" + dir}, nil, &stdout, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "--num_request=3") || !strings.Contains(err.Error(), "only 2 images") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %v, want one naming 3 requests and the folder's 2 images", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %s", stdout.String())
	}
}

func TestParseArgs(t *testing.T) {
	def := options{url: "http://127.0.0.1:8000/", images: "imgs", concurrency: 100, field: "inputFile", retries: 1, retryCut: true}
	with := func(change func(*options)) options {
		o := def
		change(&o)
		return o
	}
	for _, c := range []struct {
		name string
		args []string
		want options
		err  string // part of the error; "" for none
	}{
		{name: "surge's flags", args: []string{"-images", "imgs"}, want: def},
		{
			name: "the course's flags",
			args: []string{"--num_request=100", "--ip_addr=10.0.0.5", "--image_folder=imgs", "--prediction_file=l.csv"},
			want: with(func(o *options) { o.numRequest, o.url, o.labels = 100, "http://10.0.0.5:8000/", "l.csv" }),
		},
		{
			name: "an IPv6 address",
			args: []string{"--ip_addr=::1", "--image_folder=imgs"},
			want: with(func(o *options) { o.url = "http://[::1]:8000/" }),
		},
		{
			name: "-url wins over --ip_addr",
			args: []string{"--ip_addr=10.0.0.5", "-url", "http://127.0.0.1:9000/x", "-images", "imgs"},
			want: with(func(o *options) { o.url = "http://127.0.0.1:9000/x" }),
		},
		{
			name: "both names agreeing",
			args: []string{"-images", "imgs", "--image_folder", "imgs", "-labels", "l.csv", "--prediction_file", "l.csv"},
			want: with(func(o *options) { o.labels = "l.csv" }),
		},
		{
			name: "surge's other flags",
			args: []string{"-images", "imgs", "-retries", "0", "-retry-cut=false", "-concurrency", "7", "-field", "myfile", "-timeout", "3s"},
			want: with(func(o *options) {
				o.retries, o.retryCut, o.concurrency, o.field, o.timeout = 0, false, 7, "myfile", 3*time.Second
			}),
		},
		{name: "no images", args: []string{"--num_request=5"}, err: "-images (or --image_folder) is required"},
		{name: "images disagree", args: []string{"-images", "a", "--image_folder", "b"}, err: `-images "a" and --image_folder "b" disagree`},
		{name: "labels disagree", args: []string{"-images", "a", "-labels", "x", "--prediction_file", "y"}, err: "disagree"},
		{name: "zero requests", args: []string{"-images", "a", "--num_request=0"}, err: "--num_request=0"},
		{name: "negative retries", args: []string{"-images", "a", "-retries=-1"}, err: "-retries=-1"},
		{name: "no concurrency", args: []string{"-images", "a", "-concurrency=0"}, err: "-concurrency=0"},
		{name: "stray argument", args: []string{"-images", "a", "extra"}, err: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--num_requests=5"}, err: "not defined"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseArgs(c.args, nil, io.Discard)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("options %+v, want %+v", got, c.want)
			}
		})
	}
}

// -h prints the usage, which says when the command fails, and is not an
// error of the workload's.
func TestUsage(t *testing.T) {
	var stderr strings.Builder
	_, err := parseArgs([]string{"-h"}, nil, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h gave %v", err)
	}
	for _, want := range []string{"--num_request=N --ip_addr=IP --image_folder=DIR --prediction_file=CSV", "Exits 1 when any request failed", "-retries"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}
