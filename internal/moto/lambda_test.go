package moto

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// createRole makes an IAM role in moto, which Lambda functions need.
func createRole(t *testing.T, name string) string {
	t.Helper()
	form := url.Values{
		"Action": {"CreateRole"}, "Version": {"2010-05-08"}, "RoleName": {name},
		"AssumeRolePolicyDocument": {`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`},
	}
	m := newMotoClients(moto.URL, http.DefaultClient)
	status, body, err := m.raw(context.Background(), "iam", region, http.MethodPost, "/", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("creating role %s: %v %d %s", name, err, status, body)
	}
	return "arn:aws:iam::" + defaultAccount + ":role/" + name
}

func zipped(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	f, err := z.Create("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("#!/bin/sh\n"))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func createFunction(t *testing.T, c *lambda.Client, name, role string) {
	t.Helper()
	_, err := c.CreateFunction(context.Background(), &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Role: aws.String(role), Runtime: lambdatypes.RuntimeProvidedal2023,
		Handler: aws.String("bootstrap"), Code: &lambdatypes.FunctionCode{ZipFile: zipped(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLambdaConcurrencyLimit(t *testing.T) {
	p := start(t, ProxyConfig{ConcurrencyLimit: 20})
	c := lambda.NewFromConfig(sdkConfig(p, "tester"))
	ctx := context.Background()
	role := createRole(t, "fn-role")
	createFunction(t, c, "scaler", role)
	createFunction(t, c, "other", role)

	settings := func() *lambda.GetAccountSettingsOutput {
		t.Helper()
		out, err := c.GetAccountSettings(ctx, &lambda.GetAccountSettingsInput{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	s := settings()
	if s.AccountLimit.ConcurrentExecutions != 20 || aws.ToInt32(s.AccountLimit.UnreservedConcurrentExecutions) != 20 ||
		s.AccountLimit.CodeSizeZipped != 52428800 || s.AccountLimit.CodeSizeUnzipped != 262144000 || s.AccountLimit.TotalCodeSize != 80530636800 ||
		s.AccountUsage.FunctionCount != 2 || s.AccountUsage.TotalCodeSize <= 0 {
		t.Errorf("account settings: %+v %+v", *s.AccountLimit, *s.AccountUsage)
	}

	reserve := func(fn string, n int32) error {
		_, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(fn), ReservedConcurrentExecutions: aws.Int32(n)})
		return err
	}
	if err := reserve("scaler", 5); err != nil {
		t.Fatal(err)
	}
	// Exactly 10 left unreserved is allowed.
	if err := reserve("other", 5); err != nil {
		t.Fatal(err)
	}
	if got := aws.ToInt32(settings().AccountLimit.UnreservedConcurrentExecutions); got != 10 {
		t.Errorf("unreserved = %d, want 10", got)
	}
	err := reserve("other", 6)
	code, msg, status := apiError(t, err)
	if code != "InvalidParameterValueException" || status != 400 || msg != reservationMessage() {
		t.Errorf("below 10 unreserved: %s (%d) %q", code, status, msg)
	}
	// A function's own reservation is replaced, not added to.
	if err := reserve("arn:aws:lambda:us-east-1:123456789012:function:scaler", 5); err != nil {
		t.Errorf("re-reserving the same amount: %v", err)
	}
}
