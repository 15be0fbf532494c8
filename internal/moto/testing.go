// Fixture for tests of the AWS code paths: they
// run against moto_server on loopback. The fast tier (go test -short)
// starts no moto_server and skips them.

package moto

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/surgeml/surge/internal/aws"
)

// Main is a TestMain: it starts moto_server, points the process's AWS
// SDK at it and runs the tests. Under -short it starts nothing and runs
// the tests, those needing moto_server skipping in Clients.
func Main(m *testing.M) {
	if short() {
		// A call that slips past Clients is refused on loopback instead
		// of going to AWS.
		setEnv(&Server{URL: "http://127.0.0.1:1"})
		os.Exit(m.Run())
	}
	s, err := StartServer(context.Background(), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setEnv(s)
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

// setEnv points the process's AWS SDK at s.
func setEnv(s *Server) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
}

// short reports whether the test binary runs the fast tier (-short).
// Unlike testing.Short it may be called in a TestMain, before m.Run has
// parsed the flags: it parses them.
func short() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	return testing.Short()
}

// skipShort is the fast tier's message for a test that needs
// moto_server.
const skipShort = "needs moto_server; run make test"

// Clients are SDK clients for the moto_server Main started. Under -short
// there is none, and the test skips.
func Clients(t testing.TB) *aws.Clients {
	t.Helper()
	if testing.Short() {
		t.Skip(skipShort)
	}
	// moto_server, unlike S3, sometimes answers a burst of concurrent writes
	// to one key with a 500 whose body is not XML; more attempts than the
	// SDK's default 3 keep that emulator fault out of the contract tests.
	c, err := aws.LoadClients(context.Background(), awsconfig.WithRetryMaxAttempts(8))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Endpoint starts the emulated AWS endpoint with cfg in front of the
// moto_server Main started, for the rest of the test. Under -short there
// is none, and the test skips.
func Endpoint(t testing.TB, cfg ProxyConfig) *Proxy {
	t.Helper()
	if testing.Short() {
		t.Skip(skipShort)
	}
	cfg.Upstream = os.Getenv("AWS_ENDPOINT_URL")
	p, err := StartProxy(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// LaunchTemplate creates a worker launch template called name.
func LaunchTemplate(t testing.TB, c *aws.Clients, name string) {
	t.Helper()
	_, err := c.EC2.CreateLaunchTemplate(context.Background(), &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: sdk.String(name),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId:      sdk.String("ami-12345678"),
			InstanceType: types.InstanceTypeT3Micro,
			UserData:     sdk.String(base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n"))),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Function creates a Lambda function called name (moto keeps it; nothing
// runs it), with a role to satisfy the API.
func Function(t testing.TB, c *aws.Clients, name string) {
	t.Helper()
	ctx := context.Background()
	role, err := iam.NewFromConfig(c.Config).CreateRole(ctx, &iam.CreateRoleInput{
		RoleName:                 sdk.String(name + "-role"),
		AssumeRolePolicyDocument: sdk.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	w, _ := zw.Create("bootstrap")
	w.Write([]byte("#!/bin/sh\n"))
	zw.Close()
	if _, err := lambda.NewFromConfig(c.Config).CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: sdk.String(name), Role: role.Role.Arn, Runtime: lambdatypes.RuntimeProvidedal2023,
		Handler: sdk.String("bootstrap"), Code: &lambdatypes.FunctionCode{ZipFile: zipped.Bytes()},
	}); err != nil {
		t.Fatal(err)
	}
}
