package deploy

import (
	"slices"
	"strings"
	"testing"
)

func TestEnviron(t *testing.T) {
	base := []string{"PATH=/bin", "AWS_PROFILE=work", "AWS_REGION=eu-west-1", "HOME=/root", "AWS_SESSION_TOKEN=secret"}
	got := environ(base, []string{"AWS_REGION=us-west-2", "AWS_ENDPOINT_URL=http://127.0.0.1:5000"}, []string{"AWS_PROFILE", "AWS_SESSION_TOKEN"})
	want := []string{"PATH=/bin", "HOME=/root", "AWS_REGION=us-west-2", "AWS_ENDPOINT_URL=http://127.0.0.1:5000"}
	if !slices.Equal(got, want) {
		t.Errorf("environ = %v, want %v", got, want)
	}
}

func TestFailureLines(t *testing.T) {
	for _, tc := range []struct {
		name, output, want string
	}{
		{"resource failures and the CLI's error",
			"x: creating CloudFormation changeset...\nx | 0/9 | CREATE_IN_PROGRESS | AWS::SQS::Queue | Requests\n" +
				"x | 1/9 | CREATE_FAILED | AWS::S3::Bucket | In Resource handler returned message: \"x-in-bucket already exists\"\n" +
				"❌  x failed: _ToolkitError: The stack named x failed creation\n",
			"x | 1/9 | CREATE_FAILED | AWS::S3::Bucket | In Resource handler returned message: \"x-in-bucket already exists\"\n" +
				"❌  x failed: _ToolkitError: The stack named x failed creation"},
		{"nothing says why: the last lines", "one\ntwo\n", "one\ntwo"},
	} {
		if got := failureLines(tc.output); got != tc.want {
			t.Errorf("%s: failureLines =\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
	var long strings.Builder
	for range 100 {
		long.WriteString("CREATE_FAILED\n")
	}
	if n := strings.Count(failureLines(long.String()), "\n") + 1; n != 30 {
		t.Errorf("%d lines of 100 failures, want the last 30", n)
	}
}
