package moto

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// motoClients are SDK clients pointed straight at moto, for the proxy's
// own look-ups, one set per region.
type motoClients struct {
	upstream string
	http     *http.Client

	mu      sync.Mutex
	regions map[string]*regionClients
}

type regionClients struct {
	region string
	EC2    *ec2.Client
	CFN    *cloudformation.Client
	Lambda *lambda.Client
	S3     *s3.Client
	SQS    *sqs.Client
	Logs   *cloudwatchlogs.Client
}

func newMotoClients(upstream string, hc *http.Client) *motoClients {
	return &motoClients{upstream: upstream, http: hc, regions: map[string]*regionClients{}}
}

func (m *motoClients) in(region string) *regionClients {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.regions[region]; ok {
		return c
	}
	// Built by hand, not from the environment, whose AWS_ENDPOINT_URL may
	// well point at the proxy itself.
	cfg := aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(motoAccessKey, "moto", ""),
		BaseEndpoint: aws.String(m.upstream),
		HTTPClient:   m.http,
	}
	c := &regionClients{
		region: region,
		EC2:    ec2.NewFromConfig(cfg),
		CFN:    cloudformation.NewFromConfig(cfg),
		Lambda: lambda.NewFromConfig(cfg),
		S3:     s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		SQS:    sqs.NewFromConfig(cfg),
		Logs:   cloudwatchlogs.NewFromConfig(cfg),
	}
	m.regions[region] = c
	return c
}

// motoAccessKey is the proxy's own caller id towards moto; moto puts any
// key it did not issue itself in its default account, as it does every
// client of the emulation.
const motoAccessKey = "surge-proxy"

// raw sends a request to a service that the proxy has no SDK module for
// (IAM, DynamoDB). moto reads the service and region from the credential
// scope and checks no signature.
func (m *motoClients) raw(ctx context.Context, service, region, method, path, contentType string, body []byte, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, m.upstream+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", fmt.Sprintf(
		"AWS4-HMAC-SHA256 Credential=%s/20260101/%s/%s/aws4_request, SignedHeaders=host, Signature=0", motoAccessKey, region, service))
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("asking moto's %s: %w", service, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("reading moto's %s answer: %w", service, err)
	}
	return resp.StatusCode, answer, nil
}

// iamRoleExists asks moto's IAM (global, answered in us-east-1).
func (m *motoClients) iamRoleExists(ctx context.Context, name string) (bool, error) {
	form := url.Values{"Action": {"GetRole"}, "Version": {"2010-05-08"}, "RoleName": {name}}
	status, body, err := m.raw(ctx, "iam", "us-east-1", http.MethodPost, "/", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	if err != nil {
		return false, err
	}
	switch {
	case status == http.StatusOK:
		return true, nil
	case strings.Contains(string(body), "NoSuchEntity"):
		return false, nil
	}
	return false, fmt.Errorf("IAM GetRole %s: HTTP %d: %s", name, status, body)
}

// dynamoTableExists asks moto's DynamoDB.
func (m *motoClients) dynamoTableExists(ctx context.Context, region, name string) (bool, error) {
	body := fmt.Appendf(nil, `{"TableName":%q}`, name)
	status, answer, err := m.raw(ctx, "dynamodb", region, http.MethodPost, "/", "application/x-amz-json-1.0", body,
		map[string]string{"X-Amz-Target": "DynamoDB_20120810.DescribeTable"})
	if err != nil {
		return false, err
	}
	switch {
	case status == http.StatusOK:
		return true, nil
	case strings.Contains(string(answer), "ResourceNotFoundException"):
		return false, nil
	}
	return false, fmt.Errorf("DynamoDB DescribeTable %s: HTTP %d: %s", name, status, answer)
}
