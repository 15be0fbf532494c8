package moto

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
)

// moto is the moto_server of this test binary; each test resets it.
// Under -short there is none: the tests of pure logic run, the others
// skip in start.
var moto *Server

func TestMain(m *testing.M) {
	if short() {
		os.Exit(m.Run())
	}
	s, err := StartServer(context.Background(), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moto = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

const region = "us-east-1"

// start resets moto and starts a proxy in front of it with cfg.
func start(t *testing.T, cfg ProxyConfig) *Proxy {
	t.Helper()
	if moto == nil {
		t.Skip(skipShort)
	}
	if err := moto.Reset(); err != nil {
		t.Fatal(err)
	}
	cfg.Upstream = moto.URL
	p, err := StartProxy(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// sdkConfig is an SDK configuration that reaches the proxy as caller, without
// retries, so that errors the SDK would retry (5xx) show at once.
func sdkConfig(p *Proxy, caller string) aws.Config {
	return aws.Config{
		Region:           region,
		Credentials:      credentials.NewStaticCredentialsProvider(caller, "secret", ""),
		BaseEndpoint:     aws.String(p.URL()),
		RetryMaxAttempts: 1,
	}
}

// apiError returns the AWS error code and HTTP status of err.
func apiError(t *testing.T, err error) (code, message string, status int) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return ae.ErrorCode(), ae.ErrorMessage(), status
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
