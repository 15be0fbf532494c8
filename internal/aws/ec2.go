// This file runs the worker fleet as EC2 instances launched from a
// launch template. Instances carry a Name tag (app-tier-instance-<n>) and a
// fleet tag naming the deployment, which is how they are found and what
// the IAM policies key on; a worker adds a readiness tag to its own
// instance once it takes work.

package aws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/surgeml/surge/events"
)

// TagFleet is the tag whose value names the deployment an instance
// belongs to.
const TagFleet = "surge:fleet"

// TagPool marks an instance of the warm pool: one that has booted and
// run a worker, so it is stopped rather than terminated on scale-in while
// the pool has room, and started again before any new instance is
// launched. Stopped, it is not part of the fleet the scaler sizes.
const TagPool = "surge:pool"

// EC2API is the part of the EC2 EC2API a Fleet uses; *ec2.Client is one.
type EC2API interface {
	ec2.DescribeInstancesAPIClient
	RunInstances(ctx context.Context, in *ec2.RunInstancesInput, opts ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, opts ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	StartInstances(ctx context.Context, in *ec2.StartInstancesInput, opts ...func(*ec2.Options)) (*ec2.StartInstancesOutput, error)
	StopInstances(ctx context.Context, in *ec2.StopInstancesInput, opts ...func(*ec2.Options)) (*ec2.StopInstancesOutput, error)
	CreateTags(ctx context.Context, in *ec2.CreateTagsInput, opts ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	DeleteTags(ctx context.Context, in *ec2.DeleteTagsInput, opts ...func(*ec2.Options)) (*ec2.DeleteTagsOutput, error)
	DescribeLaunchTemplates(ctx context.Context, in *ec2.DescribeLaunchTemplatesInput, opts ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
}

// Fleet is one deployment's worker instances.
type Fleet struct {
	client   EC2API
	name     string   // the fleet tag's value
	template string   // launch template name
	subnets  []string // where to launch, spread by instance number
	pool     int      // how many drained instances to keep stopped
	// scope stands in for a launch scope when the context carries none:
	// random, so this process's tokens are its own.
	scope string
	// check, if set, is asked before every instance the fleet launches or
	// starts (see WithLaunchCheck).
	check func(context.Context) error

	mu sync.Mutex
	// placedScope and placed remember in which subnet each name last
	// launched within one scope, so a relaunch of the name in that scope
	// asks the same subnet first, under the same token, and EC2 answers
	// with that instance rather than make another elsewhere.
	placedScope string
	placed      map[string]string
}

// NewFleet manages the instances tagged with fleetName, launching them from the
// launch template called template into subnets (the template's or the
// default VPC's when there are none). The subnets are expected to lie in
// different Availability Zones, as a CDK VPC's are: a capacity error in
// one is taken to mean its zone.
func NewFleet(client EC2API, fleetName, template string, subnets ...string) *Fleet {
	return &Fleet{client: client, name: fleetName, template: template, subnets: subnets, scope: randomScope()}
}

// WithPool keeps up to size drained instances stopped, as a warm pool
// that Launch starts before it launches anything new; 0, the default, has
// every drained instance terminated. It returns f.
func (f *Fleet) WithPool(size int) *Fleet {
	f.pool = max(0, size)
	return f
}

// WithLaunchCheck has f ask check before it launches or starts each
// instance, the warm pool's included: an error stops the launch there (a
// *events.LaunchStopped, its cause the error). A scaler that can be
// stopped while it launches stops between one instance and the next. It
// returns f.
func (f *Fleet) WithLaunchCheck(check func(context.Context) error) *Fleet {
	f.check = check
	return f
}

// mayLaunch says why no further instance may be launched now, if so: the
// caller's time is up, the context's cutoff has passed (see
// WithLaunchCutoff), or the launch check says no.
func (f *Fleet) mayLaunch(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if cutoff, ok := ctx.Value(cutoffKey{}).(time.Time); ok && !time.Now().Before(cutoff) {
		return ErrLaunchCutoff
	}
	if f.check != nil {
		return f.check(ctx)
	}
	return nil
}

// PoolSize is the most instances f keeps stopped.
func (f *Fleet) PoolSize() int { return f.pool }

func randomScope() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return "process-" + hex.EncodeToString(b)
}

// subnetOrder is where to try launching name, in order: the subnet the
// name spreads to by its number, then the others in turn. With no subnets
// configured, EC2 chooses ("").
func (f *Fleet) subnetOrder(name string) []string {
	if len(f.subnets) == 0 {
		return []string{""}
	}
	n, err := events.InstanceIndex(events.DefaultPrefix, name)
	if err != nil {
		n = len(name)
	}
	first := (n - 1) % len(f.subnets)
	return append(slices.Clone(f.subnets[first:]), f.subnets[:first]...)
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
			{Name: sdk.String("tag:" + TagFleet), Values: []string{f.name}},
			{Name: sdk.String("instance-state-name"), Values: states},
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

func tagOf(in types.Instance, key string) (string, bool) {
	for _, t := range in.Tags {
		if sdk.ToString(t.Key) == key {
			return sdk.ToString(t.Value), true
		}
	}
	return "", false
}

func nameOf(in types.Instance) string {
	name, _ := tagOf(in, "Name")
	return name
}

// state maps EC2's instance states onto the fleet's; ok is false for
// instances that are gone.
func state(in types.Instance) (s events.State, ok bool) {
	if in.State == nil {
		return "", false
	}
	switch in.State.Name {
	case types.InstanceStateNamePending:
		return events.Pending, true
	case types.InstanceStateNameRunning:
		return events.Running, true
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameStopping, types.InstanceStateNameStopped:
		return events.Draining, true
	}
	return "", false
}

// ending reports whether an instance is terminated or on its way there:
// it will never take work, so a launch answered with it launched nothing.
func ending(in types.Instance) bool {
	if in.State == nil {
		return false
	}
	switch in.State.Name {
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated:
		return true
	}
	return false
}

// pooled reports whether in belongs to the warm pool rather than the
// fleet: stopped in it, or booting to join it (MaintainPool).
func pooled(in types.Instance) bool {
	v, member := tagOf(in, TagPool)
	return member && (v == poolWarming || in.State != nil && in.State.Name == types.InstanceStateNameStopped)
}

// List implements the scaler's and the web tier's view of the fleet.
// Whether an instance holds work is not known here (Idle is false); the
// scaler works that out from the queue. Ready means the worker has tagged
// its instance (MarkReady). Stopped pool members are not in it (see
// Pool): they run nothing until Launch starts them, so they neither count
// toward the fleet nor hold a name; nor are members still booting to join
// the pool (MaintainPool).
func (f *Fleet) List(ctx context.Context) ([]events.Instance, error) {
	all, err := f.describe(ctx, liveStates()...)
	if err != nil {
		return nil, err
	}
	out := []events.Instance{}
	for _, in := range all {
		if pooled(in) {
			continue
		}
		if s, ok := state(in); ok {
			_, ready := tagOf(in, TagReady)
			out = append(out, events.Instance{
				Name: nameOf(in), ID: sdk.ToString(in.InstanceId), State: s,
				Ready: ready, Launched: sdk.ToTime(in.LaunchTime),
			})
		}
	}
	slices.SortFunc(out, func(a, b events.Instance) int { return events.CompareInstanceNames(a.Name, b.Name) })
	return out, nil
}

// Launch starts one instance per name, one name at a time: a stopped
// pool member if there is one, renamed to the name, else a new instance.
//
// Each RunInstances call carries a client token (see launchToken) so that
// two scalers deciding the same launch in the same scope make one
// instance, while no token repeats within the day EC2 remembers tokens.
//
// A zone error in one subnet (no capacity, or the instance type not
// offered in its zone) moves the name on to the next; a subnet that failed
// is skipped for the rest of the call. An account quota, or a
// name that no subnet can take, ends the call with a *events.CapacityError
// that lists the names launched before it; so does a *events.LaunchStopped
// when, before a name, launching may not go on (see mayLaunch), or when
// ctx ends during one.
func (f *Fleet) Launch(ctx context.Context, names []string) error {
	scope := f.launchScope(ctx)
	endedList, err := f.describe(ctx, "shutting-down", "terminated")
	if err != nil {
		return err
	}
	ended := map[string]bool{}
	for _, in := range endedList {
		ended[sdk.ToString(in.InstanceId)] = true
	}
	full := map[string]bool{} // subnets that answered with a capacity error in this call
	var stopped []PoolMember
	if f.pool > 0 {
		if stopped, err = f.Pool(ctx); err != nil {
			return err
		}
	}
	var launched []string
	var errs []error
	stop := func(cause error) error {
		return errors.Join(append([]error{&events.LaunchStopped{Cause: cause, Launched: launched}}, errs...)...)
	}
	for _, name := range names {
		if err := f.mayLaunch(ctx); err != nil {
			return stop(err)
		}
		started, err := f.startPooled(ctx, name, &stopped, full)
		if !started && err == nil {
			err = f.launchName(ctx, scope, name, ended, full)
		}
		var ceiling *events.CapacityError
		switch {
		case err == nil:
			launched = append(launched, name)
		case ctx.Err() != nil:
			// Cut short by the caller: no failure of the name's.
			return stop(context.Cause(ctx))
		case errors.As(err, &ceiling):
			ceiling.Launched = launched
			if len(errs) == 0 {
				return ceiling
			}
			return errors.Join(append([]error{ceiling}, errs...)...)
		default:
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// launchName launches name in the first subnet that has room for it.
func (f *Fleet) launchName(ctx context.Context, scope, name string, ended, full map[string]bool, extra ...types.Tag) error {
	order := f.subnetOrder(name)
	if last, ok := f.lastPlaced(scope, name); ok {
		order = append([]string{last}, slices.DeleteFunc(order, func(s string) bool { return s == last })...)
	}
	var refused *events.CapacityError
	for _, subnet := range order {
		if full[subnet] {
			continue
		}
		err := f.launchIn(ctx, scope, name, subnet, ended, extra...)
		if err == nil {
			f.place(scope, name, subnet)
			return nil
		}
		code, message := apiError(err)
		switch {
		case quotaCodes[code]:
			return &events.CapacityError{Code: code, Message: message}
		case zoneCapacityCodes[code]:
			full[subnet] = true
			refused = &events.CapacityError{Code: code, Message: message}
		default:
			return err
		}
	}
	if refused == nil {
		// Every subnet had already refused an earlier name in this call.
		refused = &events.CapacityError{Code: "InsufficientInstanceCapacity", Message: "every subnet refused an earlier launch in this call"}
	}
	return refused
}

// maxReplays bounds how many client tokens in a row may answer with an
// ended instance before a launch gives up: each one means the name was
// launched and ended again within one scope, which a minute's scope
// leaves room for only a few times.
const maxReplays = 8

// launchIn launches name in subnet under the scope's token for it. EC2
// answers a token it remembers with the instance that token made, even
// terminated; then the next token in the chain is derived from that
// instance's id, so every scaler in the same position follows the same
// chain, and each link is new because instance ids are.
func (f *Fleet) launchIn(ctx context.Context, scope, name, subnet string, ended map[string]bool, extra ...types.Tag) error {
	token := launchToken(f.name, name, subnet, scope)
	var subnetID *string
	if subnet != "" {
		subnetID = sdk.String(subnet)
	}
	for range maxReplays {
		out, err := f.client.RunInstances(ctx, &ec2.RunInstancesInput{
			LaunchTemplate: &types.LaunchTemplateSpecification{LaunchTemplateName: &f.template, Version: sdk.String("$Latest")},
			MinCount:       sdk.Int32(1),
			MaxCount:       sdk.Int32(1),
			SubnetId:       subnetID,
			ClientToken:    sdk.String(token),
			TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeInstance,
				Tags:         append([]types.Tag{{Key: sdk.String("Name"), Value: sdk.String(name)}, {Key: sdk.String(TagFleet), Value: sdk.String(f.name)}}, extra...),
			}},
		}, withoutRetryOn(noRetryCodes()...))
		if err != nil {
			return fmt.Errorf("launching %s in subnet %q: %w", name, subnet, err)
		}
		if len(out.Instances) == 0 {
			return fmt.Errorf("launching %s: EC2 returned no instance", name)
		}
		in := out.Instances[0]
		id := sdk.ToString(in.InstanceId)
		// The state in a replayed answer is meant to be current, but the
		// ended instances described are checked too.
		if !ending(in) && !ended[id] {
			return nil
		}
		token = chainToken(token, id)
	}
	return fmt.Errorf("launching %s: %d client tokens in a row answered with ended instances", name, maxReplays)
}

func (f *Fleet) lastPlaced(scope, name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.placedScope != scope {
		return "", false
	}
	subnet, ok := f.placed[name]
	return subnet, ok
}

func (f *Fleet) place(scope, name, subnet string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.placedScope != scope {
		// Scopes follow one another (one invocation at a time), so only
		// the current one's placements are worth keeping.
		f.placedScope, f.placed = scope, map[string]string{}
	}
	f.placed[name] = subnet
}

// apiError is the EC2 error code and message in err, if any.
func apiError(err error) (code, message string) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode(), ae.ErrorMessage()
	}
	return "", ""
}

// Drain takes the named instances out of the fleet. While the warm pool
// has room, a ready instance (one that has booted and run its worker) is
// stopped into it; the rest are terminated. On EC2 both are a shutdown:
// systemd stops the worker, which finishes what it holds; anything it
// could not finish becomes visible again when its message times out.
func (f *Fleet) Drain(ctx context.Context, names []string) error {
	current, err := f.List(ctx)
	if err != nil {
		return err
	}
	room := 0
	if f.pool > 0 {
		members, err := f.describePool(ctx, "pending", "running", "stopping", "stopped")
		if err != nil {
			return err
		}
		// Warming members will join the pool too; those started by
		// Launch are in the fleet and do not hold a place.
		held := 0
		for _, in := range members {
			if pooled(in) || in.State.Name == types.InstanceStateNameStopping {
				held++
			}
		}
		room = max(0, f.pool-held)
	}
	var stop, terminate []string
	for _, in := range current {
		if !slices.Contains(names, in.Name) || in.State == events.Draining {
			continue
		}
		if in.Ready && len(stop) < room {
			stop = append(stop, in.ID)
		} else {
			terminate = append(terminate, in.ID)
		}
	}
	return errors.Join(f.stopIntoPool(ctx, stop), Terminate(ctx, f.client, terminate...))
}

// Terminator ends instances; *ec2.Client is one.
type Terminator interface {
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput, opts ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
}

// Terminate ends instances by id; a worker uses it on itself when idle.
func Terminate(ctx context.Context, client Terminator, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		return fmt.Errorf("terminating %v: %w", ids, err)
	}
	return nil
}
