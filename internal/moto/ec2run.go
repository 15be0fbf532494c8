package moto

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/beevik/etree"
)

// runInstances adds to moto's RunInstances what AWS does and moto does
// not: client-token idempotency, the vCPU quota and per-AZ capacity.
func (p *Proxy) runInstances(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	token := form.Get("ClientToken")
	if token == "" {
		p.launch(w, r, c, form, body)
		return
	}
	fp := fingerprint(form)
	for {
		rec, first, err := p.claimToken(r.Context(), c.region, token, fp)
		if err != nil {
			p.forwardFailed(w, "looking up a client token's instances", err)
			return
		}
		if first {
			answer, ids, ok := p.launch(w, r, c, form, body)
			p.ec2.settleToken(c.region, token, rec, answer, ids, ok)
			return
		}
		select {
		case <-rec.ready:
		case <-r.Context().Done():
			return
		}
		if rec.failed {
			continue // that request launched nothing: this one may
		}
		if rec.fingerprint != fp {
			ec2Error(w, http.StatusBadRequest, "IdempotentParameterMismatch",
				"Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			return
		}
		p.replay(w, r, c, rec)
		return
	}
}

// fingerprint identifies a RunInstances request's parameters, except the
// ones that may differ between repeats of one request.
func fingerprint(form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		switch k {
		case "Action", "Version", "ClientToken":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, form[k])
	}
	return b.String()
}

// tokenForgotten tells whether EC2's memory of a token has ended: every
// instance it made terminated more than memory ago.
func tokenForgotten(instances []instanceRecord, now time.Time, memory time.Duration) bool {
	if len(instances) == 0 {
		return true
	}
	var last time.Time
	for _, in := range instances {
		if in.terminatedAt.IsZero() {
			return false
		}
		if in.terminatedAt.After(last) {
			last = in.terminatedAt
		}
	}
	return !now.Before(last.Add(memory))
}

// claimToken returns the token's record, creating it if the token is new
// or forgotten; first tells the caller it made it and must launch.
func (p *Proxy) claimToken(ctx context.Context, region, token, fp string) (rec *tokenRecord, first bool, err error) {
	s := p.ec2
	reg := s.region(region)
	s.mu.Lock()
	old := reg.tokens[token]
	s.mu.Unlock()
	if old != nil && isClosed(old.ready) && !old.failed {
		// Refresh what the proxy knows of its instances' terminations.
		if _, err := p.currentStates(ctx, region, old.instanceIDs); err != nil {
			return nil, false, err
		}
		s.mu.Lock()
		recs := make([]instanceRecord, 0, len(old.instanceIDs))
		for _, id := range old.instanceIDs {
			if in, ok := reg.instances[id]; ok {
				recs = append(recs, *in)
			} else {
				recs = append(recs, instanceRecord{})
			}
		}
		if reg.tokens[token] == old && tokenForgotten(recs, p.clock.Now(), p.cfg.TokenMemory) {
			delete(reg.tokens, token)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := reg.tokens[token]; cur != nil {
		return cur, false, nil
	}
	rec = &tokenRecord{ready: make(chan struct{}), fingerprint: fp}
	reg.tokens[token] = rec
	return rec, true, nil
}

func (s *ec2State) settleToken(region, token string, rec *tokenRecord, answer []byte, ids []string, ok bool) {
	reg := s.region(region)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		rec.answer, rec.instanceIDs = answer, ids
	} else {
		rec.failed = true
		if reg.tokens[token] == rec {
			delete(reg.tokens, token)
		}
	}
	close(rec.ready)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// replay answers a repeated request as EC2 does: the first answer, with
// each instance's current state and a new request id.
func (p *Proxy) replay(w http.ResponseWriter, r *http.Request, c call, rec *tokenRecord) {
	states, err := p.currentStates(r.Context(), c.region, rec.instanceIDs)
	if err != nil {
		p.forwardFailed(w, "looking up a client token's instances", err)
		return
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(rec.answer); err != nil {
		p.forwardFailed(w, "reading a stored RunInstances answer", err)
		return
	}
	if set := doc.Root().SelectElement("instancesSet"); set != nil {
		for _, item := range set.SelectElements("item") {
			setState(item.SelectElement("instanceState"), states[childText(item, "instanceId")])
		}
	}
	if id := doc.Root().SelectElement("requestId"); id != nil {
		id.SetText(requestID())
	}
	answer := &upstreamAnswer{status: http.StatusOK, header: http.Header{"Content-Type": {"text/xml"}}}
	p.writeXML(w, answer, doc)
}

// launchSpec is what a RunInstances asks for, after its launch template.
type launchSpec struct {
	instanceType string
	subnet       string
	az           string // "" when neither the request nor its template chose one
	shutdown     string // instance-initiated shutdown behaviour: stop or terminate
}

// launch checks quota and capacity, then forwards the launch to moto and
// answers. It returns moto's answer for the token memory.
//
// With a RunInstancesDelay the instances exist from the start (they count
// against the quota and hold their network interfaces) while EC2 takes
// the delay to answer, and DescribeInstances lists them only once it has,
// as EC2's eventual consistency allows; a caller that gives up in the
// meantime launched them all the same.
func (p *Proxy) launch(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) (answer []byte, ids []string, ok bool) {
	up, doc, ids, ok := p.accept(w, r, c, form, body)
	if !ok {
		return nil, nil, false
	}
	answer = up.body
	if d := p.runInstancesDelay(); d > 0 {
		p.ec2.hide(c.region, ids, p.clock.Now().Add(d))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			p.log.Info("RunInstances given up by its caller before EC2 answered: launched all the same", "instances", ids, "delay", d)
			return answer, ids, true
		}
	}
	p.writeXML(w, up, doc)
	return answer, ids, true
}

// accept is the launch up to EC2's answer: checks, then moto's launch,
// whose rewritten answer it returns. When it returns false it has
// answered the client itself.
func (p *Proxy) accept(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) (up *upstreamAnswer, doc *etree.Document, ids []string, ok bool) {
	ctx := r.Context()
	reg := p.ec2.region(c.region)
	reg.launch.Lock()
	defer reg.launch.Unlock()
	spec, err := p.launchSpec(ctx, c.region, form)
	if err != nil {
		// moto answers a request it cannot serve (an unknown template, say)
		// better than the proxy could.
		p.log.Warn("RunInstances: not checking quota or capacity", "err", err)
		return p.forwardLaunch(w, r, c, body)
	}
	vcpus, known := vcpusOf(spec.instanceType)
	if !known {
		// AWS's answer to a type that does not exist; here it may also be
		// a real type the emulation's vCPU table leaves out.
		p.log.Warn("RunInstances refused: instance type not in the proxy's vCPU table", "type", spec.instanceType)
		ec2Error(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("Invalid value '%s' for InstanceType.", spec.instanceType))
		return nil, nil, nil, false
	}
	if spec.az != "" && !p.offers(spec.az, spec.instanceType) {
		offering, err := p.offering(ctx, c.region, spec.instanceType)
		if err != nil {
			p.forwardFailed(w, "listing Availability Zones", err)
			return nil, nil, nil, false
		}
		p.log.Info("RunInstances refused: type not offered in the zone", "az", spec.az, "type", spec.instanceType)
		ec2Error(w, http.StatusBadRequest, "Unsupported", unsupportedMessage(spec.instanceType, spec.az, offering))
		return nil, nil, nil, false
	}
	minCount := atoiOr(form.Get("MinCount"), 1)
	maxCount := max(atoiOr(form.Get("MaxCount"), minCount), minCount)
	launching := maxCount // EC2 launches as many as it can, up to MaxCount
	changed := false
	if quota := p.quota(); quota > 0 {
		usage, err := p.vcpuUsage(ctx, c.region)
		if err != nil {
			p.forwardFailed(w, "counting the account's vCPUs", err)
			return nil, nil, nil, false
		}
		if usage+vcpus*minCount > quota {
			p.log.Info("RunInstances refused: vCPU quota", "quota", quota, "usage", usage, "asked", vcpus*minCount)
			ec2Error(w, http.StatusBadRequest, "VcpuLimitExceeded", vcpuLimitMessage(quota))
			return nil, nil, nil, false
		}
		launching = min(launching, (quota-usage)/vcpus)
	}
	if launching != minCount {
		// moto launches MinCount instances whatever MaxCount says.
		form.Set("MinCount", strconv.Itoa(launching))
		form.Set("MaxCount", strconv.Itoa(launching))
		changed = true
	}
	if spec.az == "" {
		// Left to choose, EC2 places the instance in a zone that offers
		// its type and has capacity; moto would take its default,
		// <region>a.
		if z := c.region + "a"; !p.offers(z, spec.instanceType) || p.hasNoCapacity(z) {
			offering, err := p.offering(ctx, c.region, spec.instanceType)
			if err != nil {
				p.forwardFailed(w, "listing Availability Zones", err)
				return nil, nil, nil, false
			}
			open := slices.DeleteFunc(slices.Clone(offering), p.hasNoCapacity)
			switch {
			case len(offering) == 0:
				ec2Error(w, http.StatusBadRequest, "Unsupported",
					fmt.Sprintf("Your requested instance type (%s) is not supported in your requested Region (%s).", spec.instanceType, c.region))
				return nil, nil, nil, false
			case len(open) == 0:
				ec2Error(w, http.StatusInternalServerError, "InsufficientInstanceCapacity",
					fmt.Sprintf("We currently do not have sufficient %s capacity in the Region you requested (%s). "+
						"Our system will be working on provisioning additional capacity.", spec.instanceType, c.region))
				return nil, nil, nil, false
			}
			form.Set("Placement.AvailabilityZone", open[0])
			changed = true
		}
	} else if p.hasNoCapacity(spec.az) {
		offering, err := p.offering(ctx, c.region, spec.instanceType)
		if err != nil {
			p.forwardFailed(w, "listing Availability Zones", err)
			return nil, nil, nil, false
		}
		p.log.Info("RunInstances refused: no capacity", "az", spec.az, "type", spec.instanceType)
		ec2Error(w, http.StatusInternalServerError, "InsufficientInstanceCapacity",
			capacityMessage(spec.instanceType, spec.az, without(slices.DeleteFunc(offering, p.hasNoCapacity), spec.az)))
		return nil, nil, nil, false
	}
	if changed {
		body = []byte(form.Encode())
		r.Method = http.MethodPost
		r.URL.RawQuery = ""
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	up, doc, ids, ok = p.forwardLaunch(w, r, c, body)
	if ok && spec.shutdown == "terminate" {
		// moto takes the shutdown behaviour from the request only, never
		// from the launch template: an instance that powers itself off
		// would stop, not terminate, and hold its place for ever.
		for _, id := range ids {
			if _, err := p.moto.in(c.region).EC2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
				InstanceId: aws.String(id), Attribute: types.InstanceAttributeNameInstanceInitiatedShutdownBehavior, Value: aws.String("terminate"),
			}); err != nil {
				p.log.Error("setting an instance's shutdown behaviour from its launch template", "instance", id, "err", err)
			}
		}
	}
	return up, doc, ids, ok
}

// forwardLaunch launches in moto and rewrites its answer, for the caller
// to write.
func (p *Proxy) forwardLaunch(w http.ResponseWriter, r *http.Request, c call, body []byte) (up *upstreamAnswer, doc *etree.Document, ids []string, ok bool) {
	up, doc, ok = p.forwardXML(w, r, body, "RunInstances")
	if !ok {
		return nil, nil, nil, false
	}
	now := p.clock.Now()
	life := p.lifecycle()
	if set := doc.Root().SelectElement("instancesSet"); set != nil {
		for _, item := range set.SelectElements("item") {
			id := childText(item, "instanceId")
			ids = append(ids, id)
			st := item.SelectElement("instanceState")
			motoState := childText(st, "name")
			shown, _ := life.show(motoState, p.ec2.observe(c.region, id, motoState, now), now)
			setState(st, shown)
		}
	}
	return up, doc, ids, true
}

func vcpuLimitMessage(quota int) string {
	return fmt.Sprintf("You have requested more vCPU capacity than your current vCPU limit of %d allows for the instance bucket "+
		"that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.", quota)
}

func capacityMessage(instanceType, az string, others []string) string {
	msg := fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (%s). "+
		"Our system will be working on provisioning additional capacity.", instanceType, az)
	if len(others) > 0 {
		msg += fmt.Sprintf(" You can currently get %s capacity by not specifying an Availability Zone in your request or choosing %s.",
			instanceType, strings.Join(others, ", "))
	}
	return msg
}

// unsupportedMessage is EC2's wording for a type a zone does not offer,
// naming the zones that do.
// https://repost.aws/knowledge-center/ec2-instance-type-not-supported-az-error
func unsupportedMessage(instanceType, az string, offering []string) string {
	return fmt.Sprintf("Your requested instance type (%s) is not supported in your requested Availability Zone (%s). "+
		"Please retry your request by not specifying an Availability Zone or choosing %s.", instanceType, az, strings.Join(offering, ", "))
}

// launchSpec reads the instance type and placement from the request and,
// for what it leaves out, from its launch template.
func (p *Proxy) launchSpec(ctx context.Context, region string, form url.Values) (launchSpec, error) {
	m := p.moto.in(region)
	spec := launchSpec{
		instanceType: form.Get("InstanceType"),
		subnet:       firstOf(form.Get("SubnetId"), form.Get("NetworkInterface.1.SubnetId")),
		az:           form.Get("Placement.AvailabilityZone"),
		shutdown:     form.Get("InstanceInitiatedShutdownBehavior"),
	}
	ltName, ltID := form.Get("LaunchTemplate.LaunchTemplateName"), form.Get("LaunchTemplate.LaunchTemplateId")
	if ltName != "" || ltID != "" {
		in := &ec2.DescribeLaunchTemplateVersionsInput{Versions: []string{firstOf(form.Get("LaunchTemplate.Version"), "$Default")}}
		if ltID != "" {
			in.LaunchTemplateId = aws.String(ltID)
		} else {
			in.LaunchTemplateName = aws.String(ltName)
		}
		out, err := m.EC2.DescribeLaunchTemplateVersions(ctx, in)
		if err != nil {
			return spec, fmt.Errorf("reading launch template %s%s: %w", ltName, ltID, err)
		}
		if len(out.LaunchTemplateVersions) == 0 || out.LaunchTemplateVersions[0].LaunchTemplateData == nil {
			return spec, fmt.Errorf("launch template %s%s has no such version", ltName, ltID)
		}
		data := out.LaunchTemplateVersions[0].LaunchTemplateData
		if spec.instanceType == "" {
			spec.instanceType = string(data.InstanceType)
		}
		if spec.shutdown == "" {
			spec.shutdown = string(data.InstanceInitiatedShutdownBehavior)
		}
		if spec.subnet == "" && spec.az == "" {
			for _, ni := range data.NetworkInterfaces {
				if aws.ToInt32(ni.DeviceIndex) == 0 && ni.SubnetId != nil {
					spec.subnet = *ni.SubnetId
				}
			}
			if data.Placement != nil && spec.subnet == "" {
				spec.az = aws.ToString(data.Placement.AvailabilityZone)
			}
		}
	}
	if spec.instanceType == "" {
		spec.instanceType = "m1.small" // EC2's default
	}
	if spec.subnet != "" {
		out, err := m.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{spec.subnet}})
		if err != nil {
			return spec, fmt.Errorf("reading subnet %s: %w", spec.subnet, err)
		}
		if len(out.Subnets) > 0 {
			spec.az = aws.ToString(out.Subnets[0].AvailabilityZone)
		}
	}
	return spec, nil
}

// vcpuUsage is the vCPUs of the region's instances that count against
// the quota: those the overlay shows pending, running, stopping or
// shutting-down.
func (p *Proxy) vcpuUsage(ctx context.Context, region string) (int, error) {
	now := p.clock.Now()
	life := p.lifecycle()
	usage := 0
	pages := ec2.NewDescribeInstancesPaginator(p.moto.in(region).EC2, &ec2.DescribeInstancesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("describing instances: %w", err)
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				motoState := string(inst.State.Name)
				shown, _ := life.show(motoState, p.ec2.observe(region, aws.ToString(inst.InstanceId), motoState, now), now)
				switch shown {
				case "pending", "running", "stopping", "shutting-down":
					n, _ := vcpusOf(string(inst.InstanceType))
					usage += n
				}
			}
		}
	}
	return usage, nil
}

// offering lists the region's Availability Zones that offer instanceType.
func (p *Proxy) offering(ctx context.Context, region, instanceType string) ([]string, error) {
	zones, err := p.zones(ctx, region)
	return slices.DeleteFunc(zones, func(z string) bool { return !p.offers(z, instanceType) }), err
}

// zones lists the region's Availability Zones.
func (p *Proxy) zones(ctx context.Context, region string) ([]string, error) {
	out, err := p.moto.in(region).EC2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		return nil, fmt.Errorf("describing Availability Zones of %s: %w", region, err)
	}
	var zones []string
	for _, z := range out.AvailabilityZones {
		zones = append(zones, aws.ToString(z.ZoneName))
	}
	sort.Strings(zones)
	return zones, nil
}

func atoiOr(s string, dflt int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return dflt
	}
	return n
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func without(list []string, s string) []string {
	var out []string
	for _, it := range list {
		if it != s {
			out = append(out, it)
		}
	}
	return out
}
