package stackhooks

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	defaults := Config{ScalerWindow: 60 * time.Second, LaunchSettle: 10 * time.Second, Poll: 5 * time.Second, Margin: 10 * time.Second, RoleWait: 2 * time.Minute}
	with := func(f func(*Config)) Config {
		c := defaults
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Config
		err  string // part of the error, when one is expected
	}{
		{
			name: "fleet only",
			env:  map[string]string{"SURGE_FLEET": "surge"},
			want: with(func(c *Config) { c.Fleet = "surge" }),
		},
		{
			name: "everything",
			env: map[string]string{
				"SURGE_FLEET": "prod", "SURGE_VPC_ID": "vpc-1", "SURGE_SCALER_FUNCTION": "prod-scaler",
				"SURGE_SCALER_WINDOW": "90s", "SURGE_EMPTY_BUCKETS": "prod-in, prod-out,,", "SURGE_POLL": "2s", "SURGE_ROLE_WAIT": "30s",
			},
			want: Config{Fleet: "prod", VPCID: "vpc-1", ScalerFunction: "prod-scaler", ScalerWindow: 90 * time.Second,
				LaunchSettle: 10 * time.Second, EmptyBuckets: []string{"prod-in", "prod-out"}, Poll: 2 * time.Second, Margin: 10 * time.Second,
				RoleWait: 30 * time.Second},
		},
		{
			name: "blank lists and spaces",
			env:  map[string]string{"SURGE_FLEET": " surge ", "SURGE_EMPTY_BUCKETS": " , ", "SURGE_VPC_ID": " "},
			want: with(func(c *Config) { c.Fleet = "surge" }),
		},
		{name: "no fleet", env: map[string]string{"SURGE_VPC_ID": "vpc-1"}, err: "SURGE_FLEET"},
		{name: "malformed window", env: map[string]string{"SURGE_FLEET": "s", "SURGE_SCALER_WINDOW": "70"}, err: "SURGE_SCALER_WINDOW"},
		{name: "negative window", env: map[string]string{"SURGE_FLEET": "s", "SURGE_SCALER_WINDOW": "-1s"}, err: "SURGE_SCALER_WINDOW"},
		{name: "zero poll", env: map[string]string{"SURGE_FLEET": "s", "SURGE_POLL": "0s"}, err: "SURGE_POLL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
