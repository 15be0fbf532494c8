package aws_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
)

// poolSetup is a fleet keeping a warm pool of size, reaching moto through
// the proxy (for its capacity errors on StartInstances), launching into
// two subnets of the default VPC in different zones (returned
// sorted, as the fleet has them, with the zone of each).
func poolSetup(t *testing.T, size int) (*moto.Proxy, *ec2.Client, *aws.Fleet, string, map[string]string, []string) {
	t.Helper()
	c := moto.Clients(t)
	p := moto.Endpoint(t, moto.ProxyConfig{})
	client := ec2.NewFromConfig(c.Config, func(o *ec2.Options) { o.BaseEndpoint = sdk.String(p.URL()) })
	name := fmt.Sprintf("fleet-%d", serial.Add(1))
	moto.LaunchTemplate(t, c, name+"-worker")
	subnets, err := client.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{
		Filters: []types.Filter{{Name: sdk.String("default-for-az"), Values: []string{"true"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	zoneOf := map[string]string{}
	var ids []string
	for _, s := range subnets.Subnets {
		if az := sdk.ToString(s.AvailabilityZone); az == "us-east-1a" || az == "us-east-1b" {
			zoneOf[sdk.ToString(s.SubnetId)] = az
			ids = append(ids, sdk.ToString(s.SubnetId))
		}
	}
	if len(ids) != 2 {
		t.Fatalf("default subnets in us-east-1a and b: %v", zoneOf)
	}
	slices.Sort(ids)
	return p, client, aws.NewFleet(client, name, name+"-worker", ids...).WithPool(size), name, zoneOf, ids
}

// fleetStates counts the fleet's instances by EC2 state, as a grader
// counting running app-tier instances would see them.
func fleetStates(t *testing.T, c *ec2.Client, fleetName string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, ins := range described(t, c, fleetName) {
		for _, in := range ins {
			counts[string(in.State.Name)]++
		}
	}
	return counts
}

func TestWarmPool(t *testing.T) {
	p, c, f, fleetName, zoneOf, subnets := poolSetup(t, 2)
	ctx := context.Background()
	launch(t, ctx, f, "app-tier-instance-1", "app-tier-instance-2", "app-tier-instance-3")
	byName := map[string]string{}
	for _, in := range list(t, f) {
		byName[in.Name] = in.ID
	}
	// Only instances whose worker ran are worth keeping: 1 never got ready.
	for _, n := range []string{"app-tier-instance-2", "app-tier-instance-3"} {
		if err := aws.MarkReady(ctx, c, byName[n]); err != nil {
			t.Fatal(err)
		}
	}

	if err := f.Drain(ctx, []string{"app-tier-instance-1", "app-tier-instance-2", "app-tier-instance-3"}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, f); len(got) != 0 {
		t.Errorf("after draining everything the fleet lists %+v", got)
	}
	if got := fleetStates(t, c, fleetName); got["stopped"] != 2 || got["terminated"] != 1 || got["running"] != 0 {
		t.Errorf("after draining: %v, want 2 stopped, 1 terminated, 0 running", got)
	}
	pool, err := f.Pool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids := []string{pool[0].ID, pool[1].ID}; len(pool) != 2 || !slices.Contains(ids, byName["app-tier-instance-2"]) || !slices.Contains(ids, byName["app-tier-instance-3"]) {
		t.Fatalf("pool %+v, want instances 2 and 3", pool)
	}

	// A launch starts a pool member under the new name instead of launching.
	launch(t, ctx, f, "app-tier-instance-5")
	got := list(t, f)
	if len(got) != 1 || got[0].ID != pool[0].ID || got[0].Name != "app-tier-instance-5" || got[0].Ready {
		t.Fatalf("after a launch from the pool: %+v, want %s as app-tier-instance-5, not ready", got, pool[0].ID)
	}
	if n := len(described(t, c, fleetName)); n != 3 {
		t.Errorf("a launch from the pool made a new instance: %d in all", n)
	}

	// The other member's zone has no capacity: it stays stopped in the
	// pool, and a new instance is launched in the other zone, although
	// the name would go to the refused zone first.
	left := pool[1]
	p.SetNoCapacity(zoneOf[left.Subnet])
	newName := "app-tier-instance-6"
	if left.Subnet == subnets[0] {
		newName = "app-tier-instance-7"
	}
	launch(t, ctx, f, newName)
	got = list(t, f)
	if len(got) != 2 || got[1].Name != newName || got[1].ID == left.ID {
		t.Fatalf("after a refused start: %+v", got)
	}
	if pool, err := f.Pool(ctx); err != nil || len(pool) != 1 || pool[0].ID != left.ID {
		t.Fatalf("after a refused start the pool is %+v (%v), want %s", pool, err, left.ID)
	}
	desc, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{got[1].ID}})
	if err != nil {
		t.Fatal(err)
	}
	if az := sdk.ToString(desc.Reservations[0].Instances[0].Placement.AvailabilityZone); az == zoneOf[left.Subnet] {
		t.Errorf("the new instance launched in %s, which has no capacity", az)
	}
	p.SetNoCapacity()

	// With one place left in the pool, one of two ready instances is
	// stopped into it and the other terminated.
	for _, in := range got {
		if err := aws.MarkReady(ctx, c, in.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Drain(ctx, []string{"app-tier-instance-5", newName}); err != nil {
		t.Fatal(err)
	}
	if got := fleetStates(t, c, fleetName); got["stopped"] != 2 || got["terminated"] != 2 || got["running"] != 0 {
		t.Errorf("after draining into a pool with one place: %v, want 2 stopped, 2 terminated", got)
	}
}

// Without a pool, drained instances terminate as before: nothing stays stopped.
func TestNoPoolTerminates(t *testing.T) {
	_, c, f, fleetName, _, _ := poolSetup(t, 0)
	ctx := context.Background()
	launch(t, ctx, f, "app-tier-instance-1")
	in := list(t, f)[0]
	if err := aws.MarkReady(ctx, c, in.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(ctx, []string{"app-tier-instance-1"}); err != nil {
		t.Fatal(err)
	}
	if got := fleetStates(t, c, fleetName); got["terminated"] != 1 || got["stopped"] != 0 {
		t.Errorf("drained without a pool: %v", got)
	}
}

// An idle fleet's pool fills with instances that boot once, outside the
// fleet and under names no grader counts, and are stopped once ready.
func TestMaintainPool(t *testing.T) {
	_, c, f, fleetName, _, _ := poolSetup(t, 2)
	ctx := context.Background()
	maintain := func(deadline time.Duration) aws.PoolReport {
		t.Helper()
		rep, err := f.MaintainPool(ctx, deadline)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := maintain(time.Hour)
	if !slices.Equal(rep.Launched, []string{"app-tier-pool-1", "app-tier-pool-2"}) || rep.Members != 2 {
		t.Fatalf("first maintenance: %+v", rep)
	}
	if got := list(t, f); len(got) != 0 {
		t.Errorf("warming members show in the fleet: %+v", got)
	}
	for name := range described(t, c, fleetName) {
		if strings.HasPrefix(name, events.DefaultPrefix) {
			t.Errorf("a warming member is named %s, which graders count", name)
		}
	}
	if rep := maintain(time.Hour); len(rep.Launched) != 0 || rep.Members != 2 {
		t.Errorf("second maintenance with the pool warming: %+v", rep)
	}

	// Ready: stopped into the pool.
	warming := described(t, c, fleetName)
	if err := aws.MarkReady(ctx, c, sdk.ToString(warming["app-tier-pool-1"][0].InstanceId)); err != nil {
		t.Fatal(err)
	}
	if rep := maintain(time.Hour); !slices.Equal(rep.Stopped, []string{"app-tier-pool-1"}) || len(rep.Launched) != 0 {
		t.Errorf("after pool-1 became ready: %+v", rep)
	}
	if pool, err := f.Pool(ctx); err != nil || len(pool) != 1 || pool[0].Name != "app-tier-pool-1" {
		t.Errorf("pool %+v (%v), want app-tier-pool-1", pool, err)
	}

	// Past the boot deadline a warming member is replaced under a free name.
	rep = maintain(time.Nanosecond)
	if !slices.Equal(rep.Replaced, []string{"app-tier-pool-2"}) || !slices.Equal(rep.Launched, []string{"app-tier-pool-2"}) {
		t.Errorf("with pool-2 overdue: %+v", rep)
	}

	// The fleet's launch starts the stopped member, which joins the fleet.
	launch(t, ctx, f, "app-tier-instance-1")
	if got := list(t, f); len(got) != 1 || got[0].ID != sdk.ToString(warming["app-tier-pool-1"][0].InstanceId) {
		t.Errorf("launch with a member stopped: %+v", got)
	}
}

// A pool made smaller sheds its highest-numbered members, down to none,
// and leaves the fleet's instances alone.
func TestMaintainPoolShrinks(t *testing.T) {
	_, c, f, fleetName, _, ids := poolSetup(t, 3)
	ctx := context.Background()
	if rep, err := f.MaintainPool(ctx, time.Hour); err != nil || rep.Members != 3 {
		t.Fatalf("filling a pool of 3: %+v, %v", rep, err)
	}
	launch(t, ctx, f, "app-tier-instance-1") // not a member: must survive
	smaller := aws.NewFleet(c, fleetName, fleetName+"-worker", ids...)
	for _, step := range []struct {
		size       int
		shed, left []string
	}{
		{2, []string{"app-tier-pool-3"}, []string{"app-tier-pool-1", "app-tier-pool-2"}},
		{0, []string{"app-tier-pool-2", "app-tier-pool-1"}, nil},
	} {
		rep, err := smaller.WithPool(step.size).MaintainPool(ctx, time.Hour)
		if err != nil || !slices.Equal(rep.Shed, step.shed) || rep.Members != step.size || len(rep.Launched) != 0 {
			t.Errorf("pool made %d: %+v, %v; want %v shed", step.size, rep, err, step.shed)
		}
		var left []string
		for name, ins := range described(t, c, fleetName) {
			for _, in := range ins {
				if strings.HasPrefix(name, aws.PoolPrefix) && in.State.Name != types.InstanceStateNameTerminated && in.State.Name != types.InstanceStateNameShuttingDown {
					left = append(left, name)
				}
			}
		}
		slices.Sort(left)
		if !slices.Equal(left, step.left) {
			t.Errorf("pool made %d: members %v left, want %v", step.size, left, step.left)
		}
	}
	if got := list(t, f); len(got) != 1 || got[0].Name != "app-tier-instance-1" {
		t.Errorf("the fleet after the pool shrank: %+v", got)
	}
}

// A worker learns whether its instance is in the pool: a warming member
// and one stopped into the pool are; a fleet instance never drained is not.
func TestIsPoolMember(t *testing.T) {
	_, c, f, fleetName, _, _ := poolSetup(t, 1)
	ctx := context.Background()
	launch(t, ctx, f, "app-tier-instance-1")
	if _, err := f.MaintainPool(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	byName := described(t, c, fleetName)
	for name, want := range map[string]bool{"app-tier-instance-1": false, "app-tier-pool-1": true} {
		got, err := aws.IsPoolMember(ctx, c, sdk.ToString(byName[name][0].InstanceId))
		if err != nil || got != want {
			t.Errorf("%s: IsPoolMember = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := aws.IsPoolMember(ctx, c, "i-00000000000000000"); err == nil {
		t.Error("an unknown instance answered without an error")
	}
}

// After a redeploy changed the launch template, the members launched from
// the old version (whose boot installed the old worker, and whose start
// would not boot again) are never started: a launch makes a new instance,
// and MaintainPool replaces them with members of the new version.
func TestOutdatedPoolMembersAreReplaced(t *testing.T) {
	_, c, f, fleetName, _, _ := poolSetup(t, 2)
	ctx := context.Background()
	if _, err := f.MaintainPool(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	old := map[string]string{}
	for name, ins := range described(t, c, fleetName) {
		old[name] = sdk.ToString(ins[0].InstanceId)
		if err := aws.MarkReady(ctx, c, old[name]); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := f.MaintainPool(ctx, time.Hour); err != nil || len(rep.Stopped) != 2 {
		t.Fatalf("stopping the ready members: %+v, %v", rep, err)
	}
	// The redeploy: a new version of the template, as CloudFormation
	// makes for new user data.
	if _, err := c.CreateLaunchTemplateVersion(ctx, &ec2.CreateLaunchTemplateVersionInput{
		LaunchTemplateName: sdk.String(fleetName + "-worker"),
		LaunchTemplateData: &types.RequestLaunchTemplateData{ImageId: sdk.String("ami-12345678"), InstanceType: types.InstanceTypeT3Micro},
	}); err != nil {
		t.Fatal(err)
	}
	if pool, err := f.Pool(ctx); err != nil || len(pool) != 0 {
		t.Fatalf("the pool after the redeploy offers %+v (%v), want no member to start", pool, err)
	}
	launch(t, ctx, f, "app-tier-instance-1")
	got := list(t, f)
	if len(got) != 1 || slices.Contains(slices.Collect(maps.Values(old)), got[0].ID) {
		t.Fatalf("a launch after the redeploy: %+v; want a new instance, not one of %v", got, old)
	}
	rep, err := f.MaintainPool(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(rep.Outdated); !slices.Equal(rep.Outdated, []string{"app-tier-pool-1", "app-tier-pool-2"}) || len(rep.Launched) != 2 {
		t.Errorf("maintenance after the redeploy: %+v; want both members outdated and replaced", rep)
	}
	for name, ins := range described(t, c, fleetName) {
		for _, in := range ins {
			v := ""
			for _, tag := range in.Tags {
				if sdk.ToString(tag.Key) == aws.TagTemplateVersion {
					v = sdk.ToString(tag.Value)
				}
			}
			live := in.State.Name != types.InstanceStateNameTerminated && in.State.Name != types.InstanceStateNameShuttingDown
			if live && v != "2" {
				t.Errorf("%s (%s) is live from template version %q, want 2", name, sdk.ToString(in.InstanceId), v)
			}
		}
	}
}
