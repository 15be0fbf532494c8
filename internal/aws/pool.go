// This file is the fleet's warm pool: instances that booted once (binary,
// runtime and model installed) kept stopped, paying only for their
// volumes, and started again in place of a launch.

package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/events"
)

// PoolMember is a stopped instance of the warm pool.
type PoolMember struct {
	ID     string
	Name   string // the name it last ran under; Launch renames it
	Subnet string // where it stays: a stopped instance cannot move
}

// describePool returns the fleet's pool members in the given states.
func (f *Fleet) describePool(ctx context.Context, states ...string) ([]types.Instance, error) {
	all, err := f.describe(ctx, states...)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(in types.Instance) bool {
		_, member := tagOf(in, TagPool)
		return !member
	}), nil
}

// Pool lists the stopped pool members Launch may start, in the order it
// starts them: by instance id, so that two scalers deciding the same
// launch start the same instance rather than two. Members launched from
// an older version of the launch template (before a redeploy) are left
// out: their boot installed the old worker, and starting one does not
// boot it again; MaintainPool replaces them.
func (f *Fleet) Pool(ctx context.Context) ([]PoolMember, error) {
	stopped, err := f.describePool(ctx, "stopped")
	if err != nil || len(stopped) == 0 {
		return nil, err
	}
	current, err := f.templateVersion(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]PoolMember, 0, len(stopped))
	for _, in := range stopped {
		if outdated(in, current) {
			continue
		}
		out = append(out, PoolMember{ID: sdk.ToString(in.InstanceId), Name: nameOf(in), Subnet: sdk.ToString(in.SubnetId)})
	}
	slices.SortFunc(out, func(a, b PoolMember) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// startPooled starts the first of *stopped whose subnet has not refused
// capacity in this call, as name, and takes it off *stopped. It reports
// started false with no error when no member could start, so the caller
// launches a new instance: a member refused for want of capacity stays
// stopped in the pool and marks its subnet full for the launch too; one
// that fails otherwise (another scaler stopping it, say) is left for the
// next call. An account quota is a *events.CapacityError, as for a launch.
func (f *Fleet) startPooled(ctx context.Context, name string, stopped *[]PoolMember, full map[string]bool) (started bool, err error) {
	for len(*stopped) > 0 {
		m := (*stopped)[0]
		*stopped = (*stopped)[1:]
		if full[m.Subnet] {
			continue
		}
		err := f.start(ctx, m, name)
		if err == nil {
			return true, nil
		}
		code, message := apiError(err)
		switch {
		case quotaCodes[code]:
			return false, &events.CapacityError{Code: code, Message: message}
		case zoneCapacityCodes[code]:
			full[m.Subnet] = true
		}
	}
	return false, nil
}

// start renames m to name and starts it. The readiness tag goes first: it
// said the worker of the last boot took work, and this boot's worker will
// say so again.
func (f *Fleet) start(ctx context.Context, m PoolMember, name string) error {
	if _, err := f.client.DeleteTags(ctx, &ec2.DeleteTagsInput{
		Resources: []string{m.ID}, Tags: []types.Tag{{Key: sdk.String(TagReady)}},
	}); err != nil {
		return fmt.Errorf("clearing %s on pool member %s: %w", TagReady, m.ID, err)
	}
	if _, err := f.client.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{m.ID}, Tags: []types.Tag{{Key: sdk.String("Name"), Value: sdk.String(name)}},
	}); err != nil {
		return fmt.Errorf("naming pool member %s %s: %w", m.ID, name, err)
	}
	if _, err := f.client.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{m.ID}},
		withoutRetryOn(noRetryCodes()...)); err != nil {
		return fmt.Errorf("starting pool member %s as %s: %w", m.ID, name, err)
	}
	return nil
}

// stopIntoPool tags the instances as pool members and stops them.
func (f *Fleet) stopIntoPool(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := f.client.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: ids, Tags: []types.Tag{{Key: sdk.String(TagPool), Value: sdk.String("true")}},
	}); err != nil {
		return fmt.Errorf("tagging %v %s: %w", ids, TagPool, err)
	}
	if _, err := f.client.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: ids}); err != nil {
		return fmt.Errorf("stopping %v into the warm pool: %w", ids, err)
	}
	return nil
}

// TagTemplateVersion is the tag EC2 puts on an instance launched from a
// launch template: the version it was launched from, which says what its
// boot installed.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-launch-templates.html
const TagTemplateVersion = "aws:ec2launchtemplate:version"

// templateVersion is the version of the fleet's launch template that
// launches take ($Latest): a redeploy that changes what workers boot
// makes a new one.
func (f *Fleet) templateVersion(ctx context.Context) (string, error) {
	out, err := f.client.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{f.template}})
	if err != nil {
		return "", fmt.Errorf("describing launch template %s: %w", f.template, err)
	}
	if len(out.LaunchTemplates) != 1 {
		return "", fmt.Errorf("launch template %s: %d found", f.template, len(out.LaunchTemplates))
	}
	return strconv.FormatInt(sdk.ToInt64(out.LaunchTemplates[0].LatestVersionNumber), 10), nil
}

// outdated reports whether in was launched from another version of the
// launch template than current (or from none that EC2 recorded).
func outdated(in types.Instance, current string) bool {
	v, ok := tagOf(in, TagTemplateVersion)
	return !ok || v != current
}

// poolWarming is TagPool's value on an instance launched to join the
// pool, until it is ready and stopped; a member's is "true".
const poolWarming = "warming"

// PoolPrefix names the instances launched to join the pool. It is not
// the fleet's prefix: a grader counting running app-tier-instance-* does
// not see the pool filling, and a member takes a fleet name when Launch
// starts it.
const PoolPrefix = "app-tier-pool-"

// PoolReport is what one MaintainPool did.
type PoolReport struct {
	Members  int      `json:"members"`            // stopped, stopping and warming, after this call
	Launched []string `json:"launched,omitempty"` // new instances warming to join
	Stopped  []string `json:"stopped,omitempty"`  // warming instances now ready, stopped into the pool
	Replaced []string `json:"replaced,omitempty"` // warming instances terminated for missing the boot deadline
	Shed     []string `json:"shed,omitempty"`     // members terminated because the pool was made smaller
	Outdated []string `json:"outdated,omitempty"` // members terminated because a redeploy changed the launch template since they were launched
}

// MaintainPool fills the warm pool towards its size: it launches
// instances to join it (named PoolPrefix<n>, tagged warming, so they are
// not part of the fleet), stops those whose worker has become ready, the
// proof that binary, runtime and model are installed, and terminates
// those not ready bootDeadline after launch (0: never). It is meant for
// an idle fleet: warming instances take vCPUs a scale-out would want.
// Launches carry client tokens like Launch's, so two scalers in one scope
// warm the same instances, and stop as Launch's do where launching may
// not go on (a *events.LaunchStopped among the errors). A pool made
// smaller, down to 0, terminates its surplus members, the
// highest-numbered first; members launched from an older version of the
// launch template (a redeploy since) are terminated and replaced, since
// they would run the old worker.
func (f *Fleet) MaintainPool(ctx context.Context, bootDeadline time.Duration) (PoolReport, error) {
	var rep PoolReport
	members, err := f.describePool(ctx, "pending", "running", "stopping", "stopped")
	if err != nil {
		return rep, err
	}
	current := ""
	if len(members) > 0 {
		if current, err = f.templateVersion(ctx); err != nil {
			return rep, err
		}
	}
	var replace []string
	var kept []types.Instance // members that count towards the size
	ready := map[string]bool{}
	inUse := map[string]bool{}
	now := time.Now()
	for _, in := range members {
		v, _ := tagOf(in, TagPool)
		warming := v == poolWarming
		if !warming && in.State.Name != types.InstanceStateNameStopped && in.State.Name != types.InstanceStateNameStopping {
			continue // started by Launch: in the fleet
		}
		_, isReady := tagOf(in, TagReady)
		switch {
		case outdated(in, current):
			replace = append(replace, sdk.ToString(in.InstanceId))
			rep.Outdated = append(rep.Outdated, nameOf(in))
		case warming && !isReady && bootDeadline > 0 && now.Sub(sdk.ToTime(in.LaunchTime)) > bootDeadline:
			replace = append(replace, sdk.ToString(in.InstanceId))
			rep.Replaced = append(rep.Replaced, nameOf(in))
		default:
			inUse[nameOf(in)] = true
			kept = append(kept, in)
			ready[sdk.ToString(in.InstanceId)] = warming && isReady
		}
	}
	// A pool made smaller sheds its highest-numbered members.
	slices.SortFunc(kept, func(a, b types.Instance) int { return strings.Compare(nameOf(a), nameOf(b)) })
	for len(kept) > f.pool {
		last := kept[len(kept)-1]
		kept = kept[:len(kept)-1]
		replace = append(replace, sdk.ToString(last.InstanceId))
		rep.Shed = append(rep.Shed, nameOf(last))
	}
	var stop []string
	for _, in := range kept {
		if ready[sdk.ToString(in.InstanceId)] {
			stop = append(stop, sdk.ToString(in.InstanceId))
			rep.Stopped = append(rep.Stopped, nameOf(in))
		}
	}
	count := len(kept)
	var errs []error
	errs = append(errs, f.stopIntoPool(ctx, stop), Terminate(ctx, f.client, replace...))
	if count < f.pool {
		ended, err := f.describe(ctx, "shutting-down", "terminated")
		if err != nil {
			return rep, errors.Join(append(errs, err)...)
		}
		endedIDs := map[string]bool{}
		for _, in := range ended {
			endedIDs[sdk.ToString(in.InstanceId)] = true
		}
		scope := f.launchScope(ctx)
		full := map[string]bool{}
		warmingTag := types.Tag{Key: sdk.String(TagPool), Value: sdk.String(poolWarming)}
		for n := 1; count < f.pool; n++ {
			name := events.InstanceName(PoolPrefix, n)
			if inUse[name] {
				continue
			}
			if err := f.mayLaunch(ctx); err != nil {
				errs = append(errs, &events.LaunchStopped{Cause: err, Launched: rep.Launched})
				break
			}
			if err := f.launchName(ctx, scope, name, endedIDs, full, warmingTag); err != nil {
				errs = append(errs, err)
				break // a refusal now will be one next time too: try then
			}
			rep.Launched = append(rep.Launched, name)
			count++
		}
	}
	rep.Members = count
	return rep, errors.Join(errs...)
}

// IsPoolMember reports whether instance id belongs to the warm pool (it
// carries TagPool). A worker asks at start: a pool member must not end
// its own instance when idle, since its scale-in is a stop the scaler
// decides, and a terminated member is a warm instance lost.
func IsPoolMember(ctx context.Context, client ec2.DescribeInstancesAPIClient, id string) (bool, error) {
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return false, fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if _, member := tagOf(in, TagPool); member {
				return true, nil
			}
		}
	}
	return false, nil
}
