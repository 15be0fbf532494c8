package aws

import (
	"context"
	"fmt"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/events"
)

// TagReady marks an instance whose worker takes work; its value is when
// the worker said so (RFC 3339). The scaler replaces instances that do not
// carry it within their boot deadline.
const TagReady = "surge:ready"

// Tagger tags instances; *ec2.Client is one.
type Tagger interface {
	CreateTags(ctx context.Context, in *ec2.CreateTagsInput, opts ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
}

// MarkReady tags the worker's own instance ready. A fresh instance's role
// can take a while to be honoured (IAM is eventually consistent), so
// failures are retried with backoff for about a minute before the last
// one is returned.
func MarkReady(ctx context.Context, client Tagger, instanceID string) error {
	return markReady(ctx, client, instanceID, events.Backoff{Min: time.Second, Max: 15 * time.Second}, time.Minute)
}

func markReady(ctx context.Context, client Tagger, instanceID string, backoff events.Backoff, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		_, err := client.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: []string{instanceID},
			Tags:      []types.Tag{{Key: sdk.String(TagReady), Value: sdk.String(time.Now().UTC().Format(time.RFC3339))}},
		})
		if err == nil {
			return nil
		}
		wait := backoff.Failure()
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("tagging instance %s %s: %w", instanceID, TagReady, err)
		}
		events.Sleep(ctx, wait)
	}
}
