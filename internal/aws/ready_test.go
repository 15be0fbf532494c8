package aws

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/surgeml/surge/events"
)

// flakyTagger is a named fake of CreateTags that fails its first calls,
// as EC2 does while a new instance's role is not yet honoured.
type flakyTagger struct {
	failures int
	calls    []*ec2.CreateTagsInput
}

func (f *flakyTagger) CreateTags(_ context.Context, in *ec2.CreateTagsInput, _ ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error) {
	f.calls = append(f.calls, in)
	if len(f.calls) <= f.failures {
		return nil, errors.New("UnauthorizedOperation: not yet")
	}
	return &ec2.CreateTagsOutput{}, nil
}

func TestMarkReadyRetries(t *testing.T) {
	fast := events.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}
	tagger := &flakyTagger{failures: 3}
	if err := markReady(context.Background(), tagger, "i-1", fast, time.Minute); err != nil {
		t.Fatal(err)
	}
	if len(tagger.calls) != 4 {
		t.Fatalf("%d calls, want 4", len(tagger.calls))
	}
	last := tagger.calls[3]
	if last.Resources[0] != "i-1" || sdk.ToString(last.Tags[0].Key) != TagReady {
		t.Fatalf("tagged %v with %v", last.Resources, sdk.ToString(last.Tags[0].Key))
	}
	if _, err := time.Parse(time.RFC3339, sdk.ToString(last.Tags[0].Value)); err != nil {
		t.Fatalf("tag value: %v", err)
	}

	// It gives up after its patience, with the last error.
	tagger = &flakyTagger{failures: 1 << 30}
	err := markReady(context.Background(), tagger, "i-1", fast, 30*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not yet") || len(tagger.calls) < 2 {
		t.Fatalf("after %d calls: %v", len(tagger.calls), err)
	}
	// And at once when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tagger = &flakyTagger{failures: 1 << 30}
	if err := markReady(ctx, tagger, "i-1", fast, time.Hour); err == nil || len(tagger.calls) != 1 {
		t.Fatalf("cancelled: %d calls, %v", len(tagger.calls), err)
	}
}
