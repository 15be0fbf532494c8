package moto

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// startInstances adds to moto's StartInstances what AWS does and moto does
// not: a stopped instance comes back in its own Availability Zone, so a
// zone without capacity refuses the start (InsufficientInstanceCapacity)
// and the instance stays stopped; a start shows "pending" for PendingFor
// and moves the instance's LaunchTime, as a boot does.
func (p *Proxy) startInstances(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	ids := instanceIDs(form)
	ctx := r.Context()
	out, err := p.moto.in(c.region).EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		// moto answers ids it does not know better than the proxy could.
		p.log.Warn("StartInstances: not checking capacity", "err", err)
		p.forwardStart(w, r, c, body)
		return
	}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			if in.State == nil || in.State.Name != "stopped" || in.Placement == nil {
				continue
			}
			az := aws.ToString(in.Placement.AvailabilityZone)
			if p.hasNoCapacity(az) {
				p.log.Info("StartInstances refused: no capacity", "instance", aws.ToString(in.InstanceId), "az", az)
				// A stopped instance cannot move, so unlike a launch the
				// answer names no other zone.
				ec2Error(w, http.StatusInternalServerError, "InsufficientInstanceCapacity",
					capacityMessage(string(in.InstanceType), az, nil))
				return
			}
		}
	}
	p.forwardStart(w, r, c, body)
}

func (p *Proxy) forwardStart(w http.ResponseWriter, r *http.Request, c call, body []byte) {
	answer, doc, ok := p.forwardXML(w, r, body, "StartInstances")
	if !ok {
		return
	}
	now := p.clock.Now()
	life := p.lifecycle()
	if set := doc.Root().SelectElement("instancesSet"); set != nil {
		for _, item := range set.SelectElements("item") {
			id := childText(item, "instanceId")
			prev := item.SelectElement("previousState")
			var rec instanceRecord
			if childText(prev, "name") == "stopped" {
				rec = p.ec2.started(c.region, id, now)
			} else {
				// Already running: nothing boots, whatever moto's answer says.
				rec = p.ec2.observe(c.region, id, "running", now)
				shown, _ := life.show("running", rec, now)
				setState(prev, shown)
			}
			shown, _ := life.show("running", rec, now)
			setState(item.SelectElement("currentState"), shown)
		}
	}
	p.writeXML(w, answer, doc)
}

// started records that id began to boot again at now and returns its
// record.
func (s *ec2State) started(region, id string, now time.Time) instanceRecord {
	r := s.region(region)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _ := r.record(id, now)
	rec.startedAt = now
	return *rec
}

// instanceIDs reads InstanceId.N in N order.
func instanceIDs(form url.Values) []string {
	type numbered struct {
		n  int
		id string
	}
	var all []numbered
	for k, vs := range form {
		num, ok := strings.CutPrefix(k, "InstanceId.")
		if !ok || len(vs) == 0 {
			continue
		}
		var n int
		if _, err := fmt.Sscan(num, &n); err == nil {
			all = append(all, numbered{n, vs[0]})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n < all[j].n })
	ids := make([]string, len(all))
	for i, x := range all {
		ids[i] = x.id
	}
	return ids
}
