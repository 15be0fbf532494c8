package stackhooks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/surgeml/surge/internal/aws"
)

// teardown is Delete: stop the scaler, end the fleet, empty the buckets,
// in that order (a running worker could still write to a bucket). It
// gives up before the invocation's deadline and says what was left, so
// CloudFormation shows DELETE_FAILED with a reason and destroy can be run
// again, rather than waiting an hour for an answer that never comes.
func (h *Hook) teardown(ctx context.Context, log *slog.Logger) error {
	deadline := time.Now().Add(maxRun)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(-h.cfg.Margin))
	defer cancel()

	var problems []string
	mayLaunch, err := h.stopScaler(ctx, log)
	if err != nil {
		problems = append(problems, err.Error())
	}
	// From the stop on, no scaler invocation starts, and the one under way
	// (it began before the stop) launches nothing after its window's end;
	// a launch it began just before then may still take a moment to be
	// listed. Only a look at the fleet after all that finds the last
	// instance there can be.
	quietAt := h.now()
	if mayLaunch {
		quietAt = quietAt.Add(h.cfg.ScalerWindow + h.cfg.LaunchSettle)
		log.Info("waiting out the scaler's window for launches already under way", "window", h.cfg.ScalerWindow,
			"settle", h.cfg.LaunchSettle, "lastLook", quietAt.UTC().Format(time.RFC3339))
	}
	if err := h.endFleet(ctx, log, quietAt); err != nil {
		problems = append(problems, err.Error())
		if len(h.cfg.EmptyBuckets) > 0 {
			problems = append(problems, "buckets not emptied: "+strings.Join(h.cfg.EmptyBuckets, ", "))
		}
		return errors.New(strings.Join(problems, "; "))
	}
	for _, b := range h.cfg.EmptyBuckets {
		if err := h.emptyBucket(ctx, log, b); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// stopScaler sets the scaler's reserved concurrency to 0, which throttles
// every new invocation and, unlike a higher reservation, fits any
// account's concurrency limit. It reports whether an invocation may still
// be running (and launching): not when there is no scaler.
func (h *Hook) stopScaler(ctx context.Context, log *slog.Logger) (mayLaunch bool, err error) {
	name := h.cfg.ScalerFunction
	if name == "" {
		log.Info("no scaler to stop")
		return false, nil
	}
	_, err = h.lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName:                 &name,
		ReservedConcurrentExecutions: sdk.Int32(0),
	})
	var notFound *lambdatypes.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		log.Info("scaler already gone", "function", name)
		return false, nil
	case err != nil:
		// It may still be running: wait out its window all the same.
		return true, fmt.Errorf("stopping the scaler %s: %w", name, err)
	}
	log.Info("scaler stopped (reserved concurrency 0)", "function", name)
	return true, nil
}

// terminateBatch follows EC2's advice to terminate in batches well below
// its limit of 1000 ids per request.
const terminateBatch = 100

// endFleet terminates the fleet's instances until a look that began at or
// after quietAt (when no scaler invocation can launch another, and every
// launch is listed) finds none left in a state other than terminated,
// looking again every Poll. What repeats from one look to the next is
// logged at debug level only.
func (h *Hook) endFleet(ctx context.Context, log *slog.Logger, quietAt time.Time) error {
	var live []ec2types.Instance
	var lastErr error
	said := map[string]string{}
	logChanged := func(level slog.Level, msg, state string, args ...any) {
		if said[msg] == state {
			level = slog.LevelDebug
		}
		said[msg] = state
		log.Log(ctx, level, msg, args...)
	}
	for {
		lookedAt := h.now()
		current, err := h.fleetInstances(ctx)
		if err == nil {
			live = current
			var ends []string
			for _, in := range live {
				if in.State != nil && in.State.Name != ec2types.InstanceStateNameShuttingDown {
					ends = append(ends, sdk.ToString(in.InstanceId))
				}
			}
			if len(ends) > 0 {
				logChanged(slog.LevelInfo, "terminating fleet instances", fmt.Sprint(ends), "instances", ends)
				// The last error worth reporting: one the deadline itself
				// cut short says nothing, and must not hide the one before.
				switch err := h.terminate(ctx, ends); {
				case err == nil:
					lastErr = nil
				case ctx.Err() == nil:
					lastErr = err
					logChanged(slog.LevelWarn, "terminating fleet instances failed", errorKind(err), "err", err)
				}
			} else {
				lastErr = nil
			}
			if len(live) == 0 && !lookedAt.Before(quietAt) {
				log.Info("fleet ended")
				return nil
			}
			wait := quietAt.Sub(h.now())
			logChanged(slog.LevelInfo, "waiting for the fleet to end", fmt.Sprint(len(live)),
				"live", len(live), "scalerWindowLeft", max(wait, 0).Round(time.Second))
		} else if ctx.Err() == nil {
			lastErr = err
			logChanged(slog.LevelWarn, "describing the fleet failed", errorKind(err), "err", err)
		}
		select {
		case <-ctx.Done():
			return h.leftBehind(live, quietAt, lastErr)
		case <-time.After(h.cfg.Poll):
		}
	}
}

// leftBehind says what endFleet could not finish by its deadline.
func (h *Hook) leftBehind(live []ec2types.Instance, quietAt time.Time, lastErr error) error {
	var msg string
	if len(live) > 0 {
		const shown = 10
		var ids []string
		for _, in := range live[:min(len(live), shown)] {
			state := "unknown"
			if in.State != nil {
				state = string(in.State.Name)
			}
			ids = append(ids, fmt.Sprintf("%s (%s)", sdk.ToString(in.InstanceId), state))
		}
		if len(live) > shown {
			ids = append(ids, fmt.Sprintf("and %d more", len(live)-shown))
		}
		msg = fmt.Sprintf("stopped before the deadline with %d instances of fleet %s not terminated: %s", len(live), h.cfg.Fleet, strings.Join(ids, ", "))
	} else {
		msg = fmt.Sprintf("stopped before the deadline while the scaler %s could still launch for %s", h.cfg.ScalerFunction, quietAt.Sub(h.now()).Round(time.Second))
	}
	// An error from a call the deadline itself cut short says nothing.
	if lastErr != nil && !errors.Is(lastErr, context.DeadlineExceeded) && !errors.Is(lastErr, context.Canceled) {
		msg += fmt.Sprintf(" (last error: %v)", lastErr)
	}
	return errors.New(msg)
}

// fleetInstances lists the fleet's instances not yet terminated. One
// still shutting down counts: it holds its network interface, and with it
// the security group CloudFormation is about to delete.
func (h *Hook) fleetInstances(ctx context.Context) ([]ec2types.Instance, error) {
	var out []ec2types.Instance
	pages := ec2.NewDescribeInstancesPaginator(h.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: sdk.String("tag:" + aws.TagFleet), Values: []string{h.cfg.Fleet}},
		{Name: sdk.String("instance-state-name"), Values: []string{"pending", "running", "shutting-down", "stopping", "stopped"}},
	}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing fleet %s: %w", h.cfg.Fleet, err)
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// terminate ends the instances in batches. One instance EC2 refuses (one
// with termination protection, say) fails its whole request, or that
// zone's part of it, so a failed batch is retried one instance at a time
// and the rest still end.
func (h *Hook) terminate(ctx context.Context, ids []string) error {
	var failed []string
	var firstErr error
	end := func(batch []string) error {
		_, err := h.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: batch})
		return err
	}
	for batch := range slices.Chunk(ids, terminateBatch) {
		if err := end(batch); err == nil {
			continue
		} else if len(batch) == 1 {
			failed, firstErr = append(failed, batch[0]), cmp.Or(firstErr, err)
			continue
		}
		for _, id := range batch {
			if err := end([]string{id}); err != nil {
				failed, firstErr = append(failed, id), cmp.Or(firstErr, err)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("terminating %s: %w", strings.Join(failed, ", "), firstErr)
	}
	return nil
}

// deleteBatch is DeleteObjects' limit of keys per request.
const deleteBatch = 1000

// emptyBucket deletes every object in the bucket, and in a versioned one
// every version and delete marker, which S3 requires before the bucket can
// go. A bucket that no longer exists is already done.
func (h *Hook) emptyBucket(ctx context.Context, log *slog.Logger, bucket string) error {
	v, err := h.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &bucket})
	if isNoSuchBucket(err) {
		log.Info("bucket already gone", "bucket", bucket)
		return nil
	}
	if err != nil {
		return fmt.Errorf("emptying bucket %s: %w", bucket, err)
	}
	// A suspended bucket still holds the versions made while enabled.
	versioned := v.Status != ""
	deleted := 0
	for {
		// Each round lists from the start: what it deleted is gone, and
		// nothing depends on a listing surviving deletions.
		objects, err := h.firstObjects(ctx, bucket, versioned)
		if isNoSuchBucket(err) {
			log.Info("bucket gone while emptying it", "bucket", bucket, "deleted", deleted)
			return nil
		}
		if err != nil {
			return fmt.Errorf("emptying bucket %s (%d deleted): %w", bucket, deleted, err)
		}
		if len(objects) == 0 {
			log.Info("bucket emptied", "bucket", bucket, "versioned", versioned, "deleted", deleted)
			return nil
		}
		for batch := range slices.Chunk(objects, deleteBatch) {
			out, err := h.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{
				Bucket: &bucket,
				Delete: &s3types.Delete{Objects: batch, Quiet: sdk.Bool(true)},
			})
			if err != nil {
				return fmt.Errorf("emptying bucket %s (%d deleted): %w", bucket, deleted, err)
			}
			if len(out.Errors) > 0 {
				e := out.Errors[0]
				return fmt.Errorf("emptying bucket %s: %d objects not deleted, such as %s: %s %s",
					bucket, len(out.Errors), sdk.ToString(e.Key), sdk.ToString(e.Code), sdk.ToString(e.Message))
			}
			deleted += len(batch)
		}
	}
}

// firstObjects lists up to a page of the bucket's objects (or versions and
// delete markers).
func (h *Hook) firstObjects(ctx context.Context, bucket string, versioned bool) ([]s3types.ObjectIdentifier, error) {
	var ids []s3types.ObjectIdentifier
	if versioned {
		out, err := h.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, MaxKeys: sdk.Int32(deleteBatch)})
		if err != nil {
			return nil, err
		}
		for _, v := range out.Versions {
			ids = append(ids, s3types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range out.DeleteMarkers {
			ids = append(ids, s3types.ObjectIdentifier{Key: m.Key, VersionId: m.VersionId})
		}
		return ids, nil
	}
	out, err := h.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, MaxKeys: sdk.Int32(deleteBatch)})
	if err != nil {
		return nil, err
	}
	for _, o := range out.Contents {
		ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
	}
	return ids, nil
}

// errorKind names an error by its AWS error code where it has one: the
// message itself carries a request id that differs on every call.
func errorKind(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return err.Error()
}

func isNoSuchBucket(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket"
}
