// The web instances' reply queues on SQS, created and deleted at run time.

package aws

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/surgeml/surge/events"
)

// replyRetention keeps a reply queue's messages a day: an answer nobody
// took by then has long been recorded in the results table, and a
// sweeper outage shorter than that loses nothing.
const replyRetention = 24 * time.Hour

// ReplyQueues are the reply queues whose names start with prefix.
type ReplyQueues struct {
	client *sqs.Client
	names  events.Names

	mu     sync.Mutex
	opened map[string]*Queue
}

var _ events.ReplyQueues = (*ReplyQueues)(nil)

// NewReplyQueues manages the reply queues of names.
func NewReplyQueues(client *sqs.Client, names events.Names) *ReplyQueues {
	return &ReplyQueues{client: client, names: names, opened: map[string]*Queue{}}
}

// Create implements events.ReplyQueues. The queue is encrypted at rest with
// SQS's own keys, as the stack's queues are; CreateQueue with the same
// attributes finds the queue that exists.
func (r *ReplyQueues) Create(ctx context.Context, name string) (events.Queue, error) {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return nil, err
	}
	out, err := r.client.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: &name,
		Attributes: map[string]string{
			string(types.QueueAttributeNameSqsManagedSseEnabled):   "true",
			string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(int(replyRetention.Seconds())),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating reply queue %s: %w", name, err)
	}
	q := &Queue{client: r.client, url: sdk.ToString(out.QueueUrl), name: name}
	r.mu.Lock()
	r.opened[name] = q
	r.mu.Unlock()
	return q, nil
}

// Open implements events.ReplyQueues. A queue's URL is asked for once; a
// send to a queue deleted since fails with events.ErrNoQueue, and Forget
// lets the next Open ask again.
func (r *ReplyQueues) Open(ctx context.Context, name string) (events.Queue, error) {
	return r.open(ctx, name)
}

func (r *ReplyQueues) open(ctx context.Context, name string) (*Queue, error) {
	if err := r.names.CheckReplyQueue(name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	q, ok := r.opened[name]
	r.mu.Unlock()
	if ok {
		return q, nil
	}
	out, err := r.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if isQueueGone(err) {
		return nil, fmt.Errorf("finding reply queue %s: %w", name, events.ErrNoQueue)
	}
	if err != nil {
		return nil, fmt.Errorf("finding reply queue %s: %w", name, err)
	}
	q = &Queue{client: r.client, url: sdk.ToString(out.QueueUrl), name: name}
	r.mu.Lock()
	r.opened[name] = q
	r.mu.Unlock()
	return q, nil
}

// Forget drops what Open remembers of name.
func (r *ReplyQueues) Forget(name string) {
	r.mu.Lock()
	delete(r.opened, name)
	r.mu.Unlock()
}

// List implements events.ReplyQueues with ListQueues, a page of up to
// 1000 names at a time.
func (r *ReplyQueues) List(ctx context.Context) ([]string, error) {
	var names []string
	p := sqs.NewListQueuesPaginator(r.client, &sqs.ListQueuesInput{QueueNamePrefix: sdk.String(r.names.ReplyQueuePrefix), MaxResults: sdk.Int32(1000)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing reply queues %s*: %w", r.names.ReplyQueuePrefix, err)
		}
		for _, u := range out.QueueUrls {
			name := u[strings.LastIndexByte(u, '/')+1:]
			if r.names.IsReplyQueue(name) {
				names = append(names, name)
			}
		}
	}
	return names, nil
}

// Delete implements events.ReplyQueues. A queue already gone is no error.
func (r *ReplyQueues) Delete(ctx context.Context, name string) error {
	q, err := r.open(ctx, name)
	if errors.Is(err, events.ErrNoQueue) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Forget(name)
	if _, err := r.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &q.url}); err != nil && !isQueueGone(err) {
		return fmt.Errorf("deleting reply queue %s: %w", name, err)
	}
	return nil
}

// Tags implements events.ReplyQueues with ListQueueTags.
func (r *ReplyQueues) Tags(ctx context.Context, name string) (map[string]string, error) {
	q, err := r.open(ctx, name)
	if err != nil {
		return nil, err
	}
	out, err := r.client.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: &q.url})
	if err != nil {
		return nil, fmt.Errorf("reading the tags of %s: %w", name, r.gone(name, err))
	}
	if out.Tags == nil {
		return map[string]string{}, nil
	}
	return out.Tags, nil
}

// Tag implements events.ReplyQueues with TagQueue and UntagQueue.
func (r *ReplyQueues) Tag(ctx context.Context, name string, tags map[string]string) error {
	q, err := r.open(ctx, name)
	if err != nil {
		return err
	}
	set, unset := map[string]string{}, []string{}
	for k, v := range tags {
		if v == "" {
			unset = append(unset, k)
		} else {
			set[k] = v
		}
	}
	if len(set) > 0 {
		if _, err := r.client.TagQueue(ctx, &sqs.TagQueueInput{QueueUrl: &q.url, Tags: set}); err != nil {
			return fmt.Errorf("tagging %s: %w", name, r.gone(name, err))
		}
	}
	if len(unset) > 0 {
		if _, err := r.client.UntagQueue(ctx, &sqs.UntagQueueInput{QueueUrl: &q.url, TagKeys: unset}); err != nil {
			return fmt.Errorf("untagging %s: %w", name, r.gone(name, err))
		}
	}
	return nil
}

// gone turns SQS's answer for a deleted queue into events.ErrNoQueue and
// forgets the queue's URL.
func (r *ReplyQueues) gone(name string, err error) error {
	if !isQueueGone(err) {
		return err
	}
	r.Forget(name)
	return fmt.Errorf("%w (%w)", events.ErrNoQueue, err)
}

// isQueueGone reports SQS's answer for a queue that does not exist: the
// JSON protocol's QueueDoesNotExist, or the query protocol's code for it.
func isQueueGone(err error) bool {
	if err == nil {
		return false
	}
	var missing *types.QueueDoesNotExist
	if errors.As(err, &missing) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue":
			return true
		}
	}
	return false
}

// WebInstances tells which EC2 instances are still there, for the
// sweeper of reply queues.
type WebInstances struct {
	client ec2.DescribeInstancesAPIClient
}

// NewWebInstances asks client.
func NewWebInstances(client ec2.DescribeInstancesAPIClient) *WebInstances {
	return &WebInstances{client: client}
}

// maxFilterValues is the most values one DescribeInstances filter takes.
const maxFilterValues = 200

// Alive reports the instances that are pending, running or stopping
// (still draining what they hold). An instance EC2 no longer lists, or
// lists as shutting down, terminated or stopped, is gone. A filter, not
// InstanceIds, since one unknown id fails a call that names it.
func (w *WebInstances) Alive(ctx context.Context, ids []string) (map[string]bool, error) {
	alive := map[string]bool{}
	for from := 0; from < len(ids); from += maxFilterValues {
		chunk := ids[from:min(from+maxFilterValues, len(ids))]
		pages := ec2.NewDescribeInstancesPaginator(w.client, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: sdk.String("instance-id"), Values: chunk}},
		})
		for pages.HasMorePages() {
			out, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing web instances: %w", err)
			}
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					if in.State == nil {
						continue
					}
					switch in.State.Name {
					case ec2types.InstanceStateNamePending, ec2types.InstanceStateNameRunning, ec2types.InstanceStateNameStopping:
						alive[sdk.ToString(in.InstanceId)] = true
					}
				}
			}
		}
	}
	return alive, nil
}
