// This file loads the AWS SDK configuration every AWS adapter uses:
// the standard credential chain and region, and the SDK's own endpoint
// override (AWS_ENDPOINT_URL), which points everything at an emulator such
// as moto_server.

package aws

import (
	"context"
	"fmt"
	"net/http"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Clients are the service clients Surge uses.
type Clients struct {
	Config sdk.Config
	SQS    *sqs.Client
	S3     *s3.Client
	EC2    *ec2.Client
	Dynamo *dynamodb.Client
}

// LoadClients reads the configuration from the environment and instance
// metadata, as the SDK does, and builds the clients. opts override what
// the environment says (the emulator points its own clients at moto).
func LoadClients(ctx context.Context, opts ...func(*config.LoadOptions) error) (*Clients, error) {
	// On an instance with no region configured, ask its metadata service,
	// so user data need not carry one.
	opts = append([]func(*config.LoadOptions) error{config.WithEC2IMDSRegion(), config.WithHTTPClient(HTTPClient())}, opts...)
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("loading AWS configuration: no region (set AWS_REGION)")
	}
	return &Clients{
		Config: cfg,
		SQS:    sqs.NewFromConfig(cfg),
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			// Emulators answer on one host name, so buckets go in the path.
			o.UsePathStyle = cfg.BaseEndpoint != nil
			// Objects written without checksums (by emulators, by older
			// tools) are not worth a log line per read.
			o.DisableLogOutputChecksumValidationSkipped = true
		}),
		EC2:    ec2.NewFromConfig(cfg),
		Dynamo: dynamodb.NewFromConfig(cfg),
	}, nil
}

// MaxIdleConnsPerHost is how many connections to one endpoint are kept
// open between calls. Every SQS, S3 and DynamoDB call is a round trip, and
// a new connection adds more (TCP, then TLS). A web tier with its
// dispatcher's receivers and a hundred uploads in flight, or a worker
// holding twice its cores in requests, each with a visibility extender,
// makes that many calls to one endpoint at once; the SDK keeps only 10.
const MaxIdleConnsPerHost = 256

// HTTPClient is the HTTP client all the service clients of a LoadClients
// share: keep-alives on, and enough idle connections kept for the calls a
// tier makes at once, so that a burst of calls reuses the connections of
// the last instead of opening new ones.
func HTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.DisableKeepAlives = false
		t.MaxIdleConns = 2 * MaxIdleConnsPerHost
		t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	})
}

// Endpoint configures clients for an emulated AWS at url (moto_server, or
// the emulator's endpoint in front of it): its region, and placeholder
// credentials under accessKey, which the emulator uses to tell callers
// apart. Nothing is read from the environment or instance metadata.
func Endpoint(url, region, accessKey string) []func(*config.LoadOptions) error {
	return []func(*config.LoadOptions) error{
		config.WithBaseEndpoint(url),
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, "emulated", "")),
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
	}
}
