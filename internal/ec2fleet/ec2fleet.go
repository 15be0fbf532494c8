// Package ec2fleet runs the worker fleet as EC2 instances launched from a
// launch template. Instances carry a Name tag (app-tier-instance-<n>) and a
// fleet tag naming the deployment, which is how they are found and what
// the IAM policies key on.
package ec2fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/internal/fleet"
)

// TagFleet is the tag whose value names the deployment an instance
// belongs to.
const TagFleet = "surge:fleet"

// Fleet is one deployment's worker instances.
type Fleet struct {
	client   *ec2.Client
	name     string   // the fleet tag's value
	template string   // launch template name
	subnets  []string // where to launch, spread by instance number
}

// New manages the instances tagged with fleetName, launching them from the
// launch template called template into subnets (the template's or the
// default VPC's when there are none).
func New(client *ec2.Client, fleetName, template string, subnets ...string) *Fleet {
	return &Fleet{client: client, name: fleetName, template: template, subnets: subnets}
}

// subnet spreads instances over the subnets (and so the zones) by number.
func (f *Fleet) subnet(name string) *string {
	if len(f.subnets) == 0 {
		return nil
	}
	n, err := fleet.Index(fleet.DefaultPrefix, name)
	if err != nil {
		n = len(name)
	}
	return &f.subnets[(n-1)%len(f.subnets)]
}

// liveStates are the instance states that still count as part of the
// fleet; "terminated" is the one that does not.
func liveStates() []string {
	return []string{"pending", "running", "shutting-down", "stopping", "stopped"}
}

// describe returns the fleet's instances in the given states. Asking for
// states, rather than filtering afterwards, keeps the answer small: EC2
// lists terminated instances for about an hour.
func (f *Fleet) describe(ctx context.Context, states ...string) ([]types.Instance, error) {
	var out []types.Instance
	pages := ec2.NewDescribeInstancesPaginator(f.client, &ec2.DescribeInstancesInput{
		Filters: []types.Filter{
			{Name: aws.String("tag:" + TagFleet), Values: []string{f.name}},
			{Name: aws.String("instance-state-name"), Values: states},
		},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing fleet %s: %w", f.name, err)
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

func nameOf(in types.Instance) string {
	for _, t := range in.Tags {
		if aws.ToString(t.Key) == "Name" {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// state maps EC2's instance states onto the fleet's; ok is false for
// instances that are gone.
func state(in types.Instance) (s fleet.State, ok bool) {
	if in.State == nil {
		return "", false
	}
	switch in.State.Name {
	case types.InstanceStateNamePending:
		return fleet.Pending, true
	case types.InstanceStateNameRunning:
		return fleet.Running, true
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameStopping, types.InstanceStateNameStopped:
		return fleet.Draining, true
	}
	return "", false
}

// List implements the scaler's and the web tier's view of the fleet.
// Whether an instance holds work is not known here (Idle is false); the
// scaler works that out from the queue.
func (f *Fleet) List(ctx context.Context) ([]fleet.Instance, error) {
	all, err := f.describe(ctx, liveStates()...)
	if err != nil {
		return nil, err
	}
	out := []fleet.Instance{}
	for _, in := range all {
		if s, ok := state(in); ok {
			out = append(out, fleet.Instance{Name: nameOf(in), ID: aws.ToString(in.InstanceId), State: s})
		}
	}
	slices.SortFunc(out, func(a, b fleet.Instance) int { return fleet.CompareNames(a.Name, b.Name) })
	return out, nil
}

// Launch starts one instance per name. Each launch carries a client token
// derived from the name and how many instances of that name have ended, so
// two scalers that decide the same launch at the same time (an overlapping
// Lambda invocation, a retried event) make one instance: EC2 answers the
// second RunInstances with the first one's instance. Live instances do
// not count, or a scaler that saw the other's launch land would derive a
// different token for the same decision.
func (f *Fleet) Launch(ctx context.Context, names []string) error {
	ended, err := f.describe(ctx, "terminated")
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, f.launch(ctx, name, Token(f.name, name, generation(ended, name))))
	}
	return errors.Join(errs...)
}

// generation counts the ended instances that carried name.
func generation(ended []types.Instance, name string) int {
	n := 0
	for _, in := range ended {
		if nameOf(in) == name {
			n++
		}
	}
	return n
}

// Token is the RunInstances client token for the gen-th launch of name in
// fleet: at most 64 ASCII characters, as EC2 requires.
func Token(fleetName, name string, gen int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", fleetName, name, gen)))
	return "surge-" + hex.EncodeToString(sum[:16])
}

func (f *Fleet) launch(ctx context.Context, name, token string) error {
	for attempt := 0; attempt < 2; attempt++ {
		out, err := f.client.RunInstances(ctx, &ec2.RunInstancesInput{
			LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: &f.template, Version: aws.String("$Latest")},
			MinCount:       aws.Int32(1),
			MaxCount:       aws.Int32(1),
			SubnetId:       f.subnet(name),
			ClientToken:    &token,
			TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeInstance,
				Tags:         []types.Tag{{Key: aws.String("Name"), Value: &name}, {Key: aws.String(TagFleet), Value: &f.name}},
			}},
		})
		if err != nil {
			return fmt.Errorf("launching %s: %w", name, err)
		}
		if len(out.Instances) == 0 {
			return fmt.Errorf("launching %s: EC2 returned no instance", name)
		}
		// A token EC2 still remembers from an instance that has since gone
		// replays that instance; launch again under a token that names it,
		// which every scaler in the same position derives alike.
		if _, live := state(out.Instances[0]); live {
			return nil
		}
		token = Token(f.name, name+"/"+aws.ToString(out.Instances[0].InstanceId), 0)
	}
	return fmt.Errorf("launching %s: EC2 keeps answering with gone instances", name)
}

// Drain terminates the named instances. On EC2 termination is a shutdown:
// systemd stops the worker, which finishes what it holds; anything it
// could not finish becomes visible again when its message times out.
func (f *Fleet) Drain(ctx context.Context, names []string) error {
	current, err := f.List(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, in := range current {
		if slices.Contains(names, in.Name) && in.State != fleet.Draining {
			ids = append(ids, in.ID)
		}
	}
	return Terminate(ctx, f.client, ids...)
}

// Terminate ends instances by id; a worker uses it on itself when idle.
func Terminate(ctx context.Context, client *ec2.Client, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		return fmt.Errorf("terminating %v: %w", ids, err)
	}
	return nil
}
