package moto

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Creation policies: CloudFormation holds a resource whose CreationPolicy
// asks for resource signals in progress until it has received Count
// SUCCESS signals (SignalResource, sent by the resource itself, such as an
// instance whose service answers), and fails it at a FAILURE signal or
// when Timeout passes; the stack's creation, or the update that replaced
// the resource, waits for it. moto ignores creation policies and has no
// SignalResource, so the proxy keeps such a stack in progress and takes
// the signals.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-creationpolicy.html
// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_SignalResource.html

// awaited is a resource waiting for its signals.
type awaited struct {
	logicalID, resourceType string
	count, got              int
	update                  bool // replaced by an update, not made by the stack's creation
}

// signalPolicy reads a resource's CreationPolicy.ResourceSignal: how many
// signals, within how long (CloudFormation's defaults: 1, PT5M).
func signalPolicy(res templateResource) (count int, timeout time.Duration, ok bool) {
	if res.CreationPolicy == nil || res.CreationPolicy.ResourceSignal == nil {
		return 0, 0, false
	}
	rs := res.CreationPolicy.ResourceSignal
	count, timeout = 1, 5*time.Minute
	if n, ok := toInt(rs.Count); ok && n > 0 {
		count = n
	}
	if d, err := isoDuration(rs.Timeout); err == nil && d > 0 {
		timeout = d
	}
	return count, timeout, true
}

var isoDurationPattern = regexp.MustCompile(`^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$`)

// isoDuration reads the ISO 8601 durations creation policies use (PT15M).
func isoDuration(s string) (time.Duration, error) {
	m := isoDurationPattern.FindStringSubmatch(s)
	if m == nil || s == "PT" {
		return 0, fmt.Errorf("duration %q is not of the form PT#H#M#S", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	return d, nil
}

// awaitSignals holds the stack in progress for each of ids (resources
// with a creation policy that were just made) until their signals come,
// and fails it when one does not in time.
func (p *Proxy) awaitSignals(st *stackRecord, ids []string, update bool) {
	if len(ids) == 0 {
		return
	}
	status := "CREATE_IN_PROGRESS"
	if update {
		status = "UPDATE_IN_PROGRESS"
	}
	now := p.clock.Now()
	var events []stackEvent
	p.cfn.mu.Lock()
	if st.awaiting == nil {
		st.awaiting = map[string]*awaited{}
	}
	st.heldFrom, st.heldUntil = time.Now(), time.Time{}
	timeouts := map[string]time.Duration{}
	for _, id := range ids {
		res := st.tmpl.Resources[id]
		count, timeout, _ := signalPolicy(res)
		if p.cfg.SignalTimeout > 0 {
			timeout = p.cfg.SignalTimeout
		}
		timeouts[id] = timeout
		st.awaiting[id] = &awaited{logicalID: id, resourceType: res.Type, count: count, update: update}
		events = append(events, stackEvent{at: now, logicalID: id, resourceTy: res.Type, status: status,
			reason: fmt.Sprintf("Resource creation Initiated; waiting for %d SUCCESS signal(s) within %v", count, timeout)})
	}
	p.cfn.mu.Unlock()
	p.cfn.setStatus(st, status, "", events...)
	for id, timeout := range timeouts {
		p.background(func(ctx context.Context) {
			select {
			case <-ctx.Done():
			case <-time.After(timeout):
				p.signalFailed(ctx, st, id, "Failed to receive 1 resource signal(s) within the specified duration")
			}
		})
	}
}

// signalsToAwait are the template's resources with a creation policy that
// are new, or have a new physical id, in after compared with before
// (logical id → physical id); for a new stack, before is empty.
func signalsToAwait(t *template, before, after map[string]string) []string {
	var ids []string
	for _, id := range t.order {
		if _, _, ok := signalPolicy(t.Resources[id]); !ok {
			continue
		}
		if old, ok := before[id]; !ok || old != after[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

// physicalIDs maps a stack's logical ids to physical ids, as moto has them.
func (p *Proxy) physicalIDs(ctx context.Context, region, stack string) map[string]string {
	out := map[string]string{}
	resources, err := p.stackResources(ctx, region, stack)
	if err != nil {
		p.log.Warn("reading a stack's resources", "stack", stack, "err", err)
		return out
	}
	for _, r := range resources {
		out[aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
	}
	return out
}

// signalResource takes a resource's signal (SignalResource).
func (p *Proxy) signalResource(w http.ResponseWriter, r *http.Request, c call, form url.Values) {
	st, err := p.stackFor(r.Context(), c.region, form.Get("StackName"))
	if err != nil {
		p.forwardFailed(w, "finding a signalled stack", err)
		return
	}
	if st == nil {
		cfnError(w, http.StatusBadRequest, "ValidationError", fmt.Sprintf("Stack with id %s does not exist", form.Get("StackName")))
		return
	}
	id, unique, status := form.Get("LogicalResourceId"), form.Get("UniqueId"), form.Get("Status")
	if status != "SUCCESS" && status != "FAILURE" {
		cfnError(w, http.StatusBadRequest, "ValidationError", fmt.Sprintf("1 validation error detected: Value '%s' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [SUCCESS, FAILURE]", status))
		return
	}
	p.cfn.mu.Lock()
	a := st.awaiting[id]
	p.cfn.mu.Unlock()
	if a == nil {
		cfnError(w, http.StatusBadRequest, "ValidationError", fmt.Sprintf("Resource %s in stack %s is not waiting for signals", id, st.id))
		return
	}
	p.log.Info("resource signal", "stack", st.name, "resource", id, "unique_id", unique, "status", status)
	if status == "FAILURE" {
		p.background(func(ctx context.Context) {
			p.signalFailed(ctx, st, id, fmt.Sprintf("Received FAILURE signal with UniqueId %s", unique))
		})
		cfnAnswer(w, "SignalResource")
		return
	}
	now := p.clock.Now()
	events := []stackEvent{{at: now, logicalID: id, resourceTy: a.resourceType, status: inProgress(a),
		reason: "Received SUCCESS signal with UniqueId " + unique}}
	p.cfn.mu.Lock()
	a.got++
	done := a.got >= a.count
	if done {
		delete(st.awaiting, id)
	}
	last := done && len(st.awaiting) == 0
	if last {
		st.heldUntil = time.Now()
	}
	p.cfn.mu.Unlock()
	complete := strings.Replace(inProgress(a), "IN_PROGRESS", "COMPLETE", 1)
	if done {
		events = append(events, stackEvent{at: now.Add(time.Millisecond), logicalID: id, resourceTy: a.resourceType, status: complete})
	}
	if last {
		events = append(events, stackEvent{at: now.Add(2 * time.Millisecond), logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: complete})
	}
	status = ""
	if !last {
		status = inProgress(a)
	}
	p.cfn.setStatus(st, status, "", events...)
	cfnAnswer(w, "SignalResource")
}

func inProgress(a *awaited) string {
	if a.update {
		return "UPDATE_IN_PROGRESS"
	}
	return "CREATE_IN_PROGRESS"
}

// signalFailed fails a resource still waiting for its signals: a new
// stack rolls back; an update shows as rolled back (moto's resources stay
// as the update left them).
func (p *Proxy) signalFailed(ctx context.Context, st *stackRecord, id, reason string) {
	p.cfn.mu.Lock()
	a := st.awaiting[id]
	if a == nil || st.deleting {
		p.cfn.mu.Unlock()
		return
	}
	st.awaiting = nil
	p.cfn.mu.Unlock()
	p.log.Info("resource signal failed", "stack", st.name, "resource", id, "reason", reason)
	if !a.update {
		p.rollBack(ctx, st, id, reason)
		return
	}
	now := p.clock.Now()
	stackReason := fmt.Sprintf("The following resource(s) failed to update: [%s]. ", id)
	p.cfn.setStatus(st, "UPDATE_ROLLBACK_COMPLETE", stackReason,
		stackEvent{at: now, logicalID: id, resourceTy: a.resourceType, status: "UPDATE_FAILED", reason: reason},
		stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "UPDATE_ROLLBACK_COMPLETE", reason: stackReason})
}
