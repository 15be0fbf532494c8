// Queue on Amazon SQS.

package aws

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/surgeml/surge/events"
)

// SQS's own limits.
const (
	maxBatch = events.MaxBatch
	maxWait  = 20 * time.Second
)

// Queue is one SQS queue.
type Queue struct {
	client *sqs.Client
	url    string
	name   string
	hold   time.Duration // see HoldReceived
}

var _ events.Queue = (*Queue)(nil)

// HoldReceived makes messages this queue receives stay hidden for d (whole
// seconds) rather than the queue's visibility timeout, unless their
// receiver extends them, as the worker does at once. A long poll whose
// client went away (a worker stopped or lost mid-poll) still takes
// messages on the server, SQS's and moto's alike; they then come back
// after d, not after the whole visibility timeout.
func (q *Queue) HoldReceived(d time.Duration) *Queue {
	q.hold = d
	return q
}

// OpenQueue finds the queue called name.
func OpenQueue(ctx context.Context, client *sqs.Client, name string) (*Queue, error) {
	out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: sdk.String(name)})
	if err != nil {
		return nil, fmt.Errorf("finding queue %s: %w", name, err)
	}
	return &Queue{client: client, url: sdk.ToString(out.QueueUrl), name: name}, nil
}

// QueueFromURL uses the queue at url, as given to a Lambda in its environment.
func QueueFromURL(client *sqs.Client, url string) *Queue {
	name := url
	if i := strings.LastIndexByte(url, '/'); i >= 0 {
		name = url[i+1:]
	}
	return &Queue{client: client, url: url, name: name}
}

// URL is the queue's URL.
func (q *Queue) URL() string { return q.url }

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// Send implements events.Queue.
func (q *Queue) Send(ctx context.Context, body []byte) error {
	_, err := q.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.url, MessageBody: sdk.String(string(body))})
	if isQueueGone(err) {
		return fmt.Errorf("sending to %s: %w (%w)", q.name, events.ErrNoQueue, err)
	}
	if err != nil {
		return fmt.Errorf("sending to %s: %w", q.name, err)
	}
	return nil
}

// Receive implements events.Queue. Waits beyond SQS's 20 s are made of
// several long polls.
func (q *Queue) Receive(ctx context.Context, limit int, wait time.Duration) ([]events.Message, error) {
	deadline := time.Now().Add(wait)
	for {
		poll := min(max(time.Until(deadline), 0), maxWait)
		in := &sqs.ReceiveMessageInput{
			QueueUrl:                    &q.url,
			MaxNumberOfMessages:         int32(min(limit, maxBatch)),
			WaitTimeSeconds:             int32(math.Ceil(poll.Seconds())),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		}
		if q.hold > 0 {
			in.VisibilityTimeout = int32(math.Ceil(q.hold.Seconds()))
		}
		out, err := q.client.ReceiveMessage(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("receiving from %s: %w", q.name, err)
		}
		if len(out.Messages) > 0 || !time.Now().Before(deadline) {
			msgs := make([]events.Message, len(out.Messages))
			for i, m := range out.Messages {
				n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
				msgs[i] = events.Message{ID: sdk.ToString(m.MessageId), Body: []byte(sdk.ToString(m.Body)), Receipt: sdk.ToString(m.ReceiptHandle), ReceiveCount: n}
			}
			return msgs, nil
		}
	}
}

// Extend implements events.Queue. SQS counts in whole seconds; d rounds up.
func (q *Queue) Extend(ctx context.Context, receipt string, d time.Duration) error {
	_, err := q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &q.url, ReceiptHandle: &receipt, VisibilityTimeout: int32(math.Ceil(d.Seconds())),
	})
	if err != nil {
		return fmt.Errorf("extending a message in %s: %w", q.name, err)
	}
	return nil
}

// Delete implements events.Queue.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	_, err := q.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &receipt})
	if err != nil {
		return fmt.Errorf("deleting from %s: %w", q.name, err)
	}
	return nil
}

// SendBatch implements events.Queue with SendMessageBatch, up to
// events.MaxBatch entries a call. SQS answers 200 even when some entries
// failed and lists those; a call that fails whole fails each of its
// entries.
func (q *Queue) SendBatch(ctx context.Context, bodies [][]byte) error {
	return q.batch(ctx, "sending to", len(bodies), func(ctx context.Context, from, to int) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.SendMessageBatchRequestEntry, 0, to-from)
		for i := from; i < to; i++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: sdk.String(strconv.Itoa(i)), MessageBody: sdk.String(string(bodies[i]))})
		}
		out, err := q.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &q.url, Entries: entries})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
}

// DeleteBatch implements events.Queue with DeleteMessageBatch, as
// SendBatch does with SendMessageBatch.
func (q *Queue) DeleteBatch(ctx context.Context, receipts []string) error {
	return q.batch(ctx, "deleting from", len(receipts), func(ctx context.Context, from, to int) ([]types.BatchResultErrorEntry, error) {
		entries := make([]types.DeleteMessageBatchRequestEntry, 0, to-from)
		for i := from; i < to; i++ {
			entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: sdk.String(strconv.Itoa(i)), ReceiptHandle: sdk.String(receipts[i])})
		}
		out, err := q.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.url, Entries: entries})
		if err != nil {
			return nil, err
		}
		return out.Failed, nil
	})
}

// batch makes call for each run of up to events.MaxBatch of n entries,
// whose ids are their indexes, and gathers the failures.
func (q *Queue) batch(ctx context.Context, doing string, n int, call func(ctx context.Context, from, to int) ([]types.BatchResultErrorEntry, error)) error {
	// SQS answers an empty batch with EmptyBatchRequest.
	failed := map[int]error{}
	for from := 0; from < n; from += maxBatch {
		to := min(from+maxBatch, n)
		entries, err := call(ctx, from, to)
		if isQueueGone(err) {
			// Every later call would fail alike; the caller may have
			// somewhere else to send.
			return fmt.Errorf("%s %s: %w (%w)", doing, q.name, events.ErrNoQueue, err)
		}
		if err != nil {
			for i := from; i < to; i++ {
				failed[i] = err
			}
			continue
		}
		for _, e := range entries {
			i, err := strconv.Atoi(sdk.ToString(e.Id))
			if err != nil || i < from || i >= to {
				// SQS names only the ids it was given.
				return fmt.Errorf("%s %s: a batch answer names entry %q, not sent", doing, q.name, sdk.ToString(e.Id))
			}
			failed[i] = fmt.Errorf("%s: %s", sdk.ToString(e.Code), sdk.ToString(e.Message))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s %s: %w", doing, q.name, &events.BatchError{Failed: failed})
	}
	return nil
}

// Counts implements events.Queue with SQS's approximate attributes.
func (q *Queue) Counts(ctx context.Context) (events.Counts, error) {
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &q.url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return events.Counts{}, fmt.Errorf("counting %s: %w", q.name, err)
	}
	var c events.Counts
	var errs []error
	for name, dst := range map[types.QueueAttributeName]*int{
		types.QueueAttributeNameApproximateNumberOfMessages:           &c.Visible,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible: &c.InFlight,
	} {
		n, err := strconv.Atoi(out.Attributes[string(name)])
		*dst = n
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("counting %s: %w", q.name, err)
	}
	return c, nil
}

// QueueSpec describes a queue to create. On AWS the CDK stack creates the
// queues; Create is for emulated environments and tests.
type QueueSpec struct {
	Name           string
	Visibility     time.Duration
	MaxMessageSize int    // bytes; 0 keeps SQS's default
	DeadLetter     *Queue // receives messages after MaxReceives deliveries
	MaxReceives    int
}

// CreateQueue makes the queue (or finds it, if it exists with the same
// attributes) and opens it.
func CreateQueue(ctx context.Context, client *sqs.Client, spec QueueSpec) (*Queue, error) {
	attrs := map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(math.Ceil(spec.Visibility.Seconds()))),
	}
	if spec.MaxMessageSize > 0 {
		attrs[string(types.QueueAttributeNameMaximumMessageSize)] = strconv.Itoa(spec.MaxMessageSize)
	}
	if spec.DeadLetter != nil {
		out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: &spec.DeadLetter.url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
		})
		if err != nil {
			return nil, fmt.Errorf("creating queue %s: %w", spec.Name, err)
		}
		attrs[string(types.QueueAttributeNameRedrivePolicy)] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`,
			out.Attributes[string(types.QueueAttributeNameQueueArn)], spec.MaxReceives)
	}
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &spec.Name, Attributes: attrs})
	if err != nil {
		return nil, fmt.Errorf("creating queue %s: %w", spec.Name, err)
	}
	return &Queue{client: client, url: sdk.ToString(out.QueueUrl), name: spec.Name}, nil
}
