package scaler

import (
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/surgeml/surge/events"
)

var requiredEnv = map[string]string{
	"SURGE_REQUEST_QUEUE_URL": "http://127.0.0.1:1/000000000000/surge-req-queue",
	"SURGE_LAUNCH_TEMPLATE":   "surge-worker",
	"SURGE_FLEET":             "surge",
}

func with(env map[string]string, key, value string) map[string]string {
	out := map[string]string{key: value}
	for k, v := range env {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func TestSettingsFromEnvironment(t *testing.T) {
	got, err := settingsFrom(func(k string) string { return requiredEnv[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		queueURL: requiredEnv["SURGE_REQUEST_QUEUE_URL"], template: "surge-worker", replyQueueGrace: DefaultReplyQueueGrace,
		scaler: Config{Max: events.DefaultMaxWorkers, ScaleInDelay: 2 * time.Second, BootDeadline: 5 * time.Minute,
			CapacityBackoff: 30 * time.Second, CapacityBackoffMax: 5 * time.Minute},
		lambda: LambdaConfig{Tick: 5 * time.Second, Window: DefaultWindow, LaunchAllowance: DefaultLaunchAllowance, Fleet: "surge"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}

	env := with(with(with(with(with(requiredEnv, "SURGE_MAX_WORKERS", "15"), "SURGE_SUBNETS", "subnet-a,subnet-b"),
		"SURGE_TICK", "2s"), "SURGE_BOOT_DEADLINE", "0"), "SURGE_MIN_WORKERS", "1")
	env = with(env, "SURGE_POOL_SIZE", "3")
	got, err = settingsFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if got.scaler.Max != 15 || got.scaler.Min != 1 || !reflect.DeepEqual(got.subnets, []string{"subnet-a", "subnet-b"}) ||
		got.lambda.Tick != 2*time.Second || got.scaler.BootDeadline != 0 || got.poolSize != 3 {
		t.Errorf("set: %+v", got)
	}
}

// The Lambda refuses a malformed setting before it talks to AWS (no
// endpoint answers here), naming the variable.
func TestFromEnvRefusesMalformedSettings(t *testing.T) {
	for _, c := range []struct {
		key, value string
		want       string
	}{
		{"SURGE_MAX_WORKERS", "many", `SURGE_MAX_WORKERS="many"`},
		{"SURGE_MAX_WORKERS", "0", "SURGE_MAX_WORKERS=0"},
		{"SURGE_MIN_WORKERS", "-1", "SURGE_MIN_WORKERS=-1"},
		{"SURGE_MIN_WORKERS", "20", "SURGE_MIN_WORKERS=20"},
		{"SURGE_MIN_WORKERS", "one", `SURGE_MIN_WORKERS="one"`},
		{"SURGE_TICK", "often", `SURGE_TICK="often"`},
		{"SURGE_WINDOW", "55", `SURGE_WINDOW="55"`},
		{"SURGE_BOOT_DEADLINE", "5 minutes", `SURGE_BOOT_DEADLINE="5 minutes"`},
		{"SURGE_CAPACITY_BACKOFF", "-1s", `SURGE_CAPACITY_BACKOFF="-1s"`},
		{"SURGE_SCALE_IN_DELAY", "-2s", `SURGE_SCALE_IN_DELAY="-2s"`},
		{"SURGE_POOL_SIZE", "few", `SURGE_POOL_SIZE="few"`},
		{"SURGE_POOL_SIZE", "-1", "SURGE_POOL_SIZE=-1"},
		{"SURGE_FLEET", "", "SURGE_FLEET must be set"},
		{"SURGE_REQUEST_QUEUE_URL", "", "SURGE_REQUEST_QUEUE_URL"},
	} {
		env := with(requiredEnv, c.key, c.value)
		_, err := FromEnv(context.Background(), func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%q: got %v, want an error naming %s", c.key, c.value, err, c.want)
		}
	}
}

func TestNamesOfResponseQueue(t *testing.T) {
	for queue, want := range map[string]string{
		"surge-resp-queue": "surge-resp-", "a-b-resp-queue": "a-b-resp-",
		"surge-req-queue": "", "-resp-queue": "", "resp-queue": "",
	} {
		names, err := namesOfResponseQueue(queue)
		if got := names.ReplyQueuePrefix; got != want || (err == nil) != (want != "") {
			t.Errorf("namesOfResponseQueue(%q) = %q, %v; want %q", queue, got, err, want)
		}
	}
}
