package moto

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// A deleted queue's name is refused for 60 s, through the SQS API and
// through CloudFormation; other names are not.
func TestQueueNameHeldAfterDeletion(t *testing.T) {
	p := start(t, ProxyConfig{})
	ctx := context.Background()
	c := sqs.NewFromConfig(sdkConfig(p, "tester"))
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("held")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("held")})
	// The SDK reads the code from the query-compatible header, as from SQS.
	var recently *sqstypes.QueueDeletedRecently
	if code, msg, status := apiError(t, err); !errors.As(err, &recently) || code != "AWS.SimpleQueueService.QueueDeletedRecently" ||
		status != http.StatusBadRequest || msg != queueDeletedRecentlyMessage {
		t.Fatalf("the name at once: %s (%d) %q", code, status, msg)
	}
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("other")}); err != nil {
		t.Fatalf("another name: %v", err)
	}
	tmpl := `{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "held"}}}}`
	_, err = createStack(cfnClient(p), "queues", tmpl)
	if _, msg, _ := apiError(t, err); !strings.Contains(msg, "Q: ") || !strings.Contains(msg, queueDeletedRecentlyMessage) {
		t.Fatalf("a stack naming the queue at once: %q", msg)
	}

	p.Clock().Advance(QueueNameHeld - time.Second)
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("held")}); err == nil {
		t.Fatal("the name was free a second early")
	}
	p.Clock().Advance(time.Second)
	if _, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("held")}); err != nil {
		t.Fatalf("the name a minute later: %v", err)
	}
}
