package moto

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/beevik/etree"
)

// ec2State is what the proxy knows about instances beyond moto: when each
// was first seen and terminated on the proxy's clock, and the client
// tokens RunInstances was given. One account (moto's default) is served,
// so it is kept per region.
type ec2State struct {
	mu      sync.Mutex
	regions map[string]*ec2Region
}

type ec2Region struct {
	instances map[string]*instanceRecord
	tokens    map[string]*tokenRecord
	// launch serialises the quota check with the launch it allows, so two
	// concurrent RunInstances cannot both fit into the last vCPUs.
	launch sync.Mutex
}

type instanceRecord struct {
	launchedAt, terminatedAt time.Time
	// startedAt is the last StartInstances that found it stopped: from
	// then it boots again, and EC2's LaunchTime says so.
	startedAt time.Time
	// listedFrom is when DescribeInstances first lists it: once the
	// RunInstances that made it has answered.
	listedFrom time.Time
}

// tokenRecord is a RunInstances client token and what it answered.
type tokenRecord struct {
	ready       chan struct{} // closed once the first request with the token has its answer
	failed      bool          // that request failed: the token was not used
	fingerprint string
	answer      []byte // moto's answer to the first request
	instanceIDs []string
}

func newEC2State() *ec2State { return &ec2State{regions: map[string]*ec2Region{}} }

func (s *ec2State) region(name string) *ec2Region {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.regions[name]
	if !ok {
		r = &ec2Region{instances: map[string]*instanceRecord{}, tokens: map[string]*tokenRecord{}}
		s.regions[name] = r
	}
	return r
}

// record is id's record, made at first sight (its launch, as far as the
// proxy can tell); known says whether it existed. The caller holds s.mu.
func (r *ec2Region) record(id string, now time.Time) (rec *instanceRecord, known bool) {
	rec, known = r.instances[id]
	if !known {
		rec = &instanceRecord{launchedAt: now}
		r.instances[id] = rec
	}
	return rec, known
}

// observe records an instance seen in moto's state motoState and returns
// a copy of its record: first sight is its launch; first sight as
// terminated is its termination.
func (s *ec2State) observe(region, id, motoState string, now time.Time) instanceRecord {
	r := s.region(region)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, _ := r.record(id, now)
	if motoState == "terminated" && rec.terminatedAt.IsZero() {
		rec.terminatedAt = now
	}
	return *rec
}

// hide keeps new instances out of DescribeInstances until from.
func (s *ec2State) hide(region string, ids []string, from time.Time) {
	r := s.region(region)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		rec, _ := r.record(id, from)
		rec.listedFrom = from
	}
}

// terminated records that a TerminateInstances for id went to moto and
// returns the record as it was before.
func (s *ec2State) terminated(region, id string, now time.Time) (before instanceRecord, known bool) {
	r := s.region(region)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := r.record(id, now)
	before = *rec
	// The earliest word wins: CloudFormation says when its instances
	// ended, which may be before a describe first saw them terminated.
	if rec.terminatedAt.IsZero() || now.Before(rec.terminatedAt) {
		rec.terminatedAt = now
	}
	return before, ok
}

// bootedAt is when the instance last began to boot: its launch, or the
// start that brought it back from stopped.
func (rec instanceRecord) bootedAt() time.Time {
	if rec.startedAt.After(rec.launchedAt) {
		return rec.startedAt
	}
	return rec.launchedAt
}

// lifecycle holds the durations of the instance states moto skips.
type lifecycle struct {
	pendingFor, shuttingDownFor, terminatedVisible time.Duration
}

var stateCodes = map[string]int{
	"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80,
}

// show is the state an instance shows at now, given moto's state and the
// proxy's record; gone means it has left DescribeInstances.
func (l lifecycle) show(motoState string, rec instanceRecord, now time.Time) (state string, gone bool) {
	switch {
	case motoState == "terminated" && !rec.terminatedAt.IsZero():
		switch {
		case now.Before(rec.terminatedAt.Add(l.shuttingDownFor)):
			return "shutting-down", false
		case !now.Before(rec.terminatedAt.Add(l.shuttingDownFor + l.terminatedVisible)):
			return "terminated", true
		}
		return "terminated", false
	case motoState == "running" && now.Before(rec.bootedAt().Add(l.pendingFor)):
		return "pending", false
	}
	return motoState, false
}

func (p *Proxy) lifecycle() lifecycle {
	return lifecycle{pendingFor: p.cfg.PendingFor, shuttingDownFor: p.cfg.ShuttingDownFor, terminatedVisible: p.cfg.TerminatedVisible}
}

func (p *Proxy) serveEC2(w http.ResponseWriter, r *http.Request, c call) bool {
	form, body, err := readForm(r)
	if err != nil {
		ec2Error(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return true
	}
	switch form.Get("Action") {
	case "DescribeInstances":
		p.describeInstances(w, r, c, form, body)
	case "RunInstances":
		p.runInstances(w, r, c, form, body)
	case "TerminateInstances":
		p.terminateInstances(w, r, c, body)
	case "StartInstances":
		p.startInstances(w, r, c, form, body)
	default:
		return false
	}
	return true
}

// ec2Filter is one Filter.N of an EC2 Query request.
type ec2Filter struct {
	name   string
	values []string
}

// parseFilters reads Filter.N.Name and Filter.N.Value.M in N and M order.
func parseFilters(form url.Values) []ec2Filter {
	members := queryList(form, "Filter.")
	out := make([]ec2Filter, 0, len(members))
	for _, n := range sortedInts(members) {
		f := ec2Filter{name: members[n]["Name"]}
		values := map[int]string{}
		for field, v := range members[n] {
			if m, err := strconv.Atoi(strings.TrimPrefix(field, "Value.")); err == nil && strings.HasPrefix(field, "Value.") {
				values[m] = v
			}
		}
		for _, m := range sortedInts(values) {
			f.values = append(f.values, values[m])
		}
		out = append(out, f)
	}
	return out
}

// queryList reads a Query request's list prefix + N.field = value into
// N → field → value (the first value of each).
func queryList(form url.Values, prefix string) map[int]map[string]string {
	out := map[int]map[string]string{}
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || len(vs) == 0 {
			continue
		}
		num, field, ok := strings.Cut(rest, ".")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			continue
		}
		if out[n] == nil {
			out[n] = map[string]string{}
		}
		out[n][field] = vs[0]
	}
	return out
}

func sortedInts[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}

// withFilters replaces form's filters by filters, numbered from 1.
func withFilters(form url.Values, filters []ec2Filter) url.Values {
	out := url.Values{}
	for k, vs := range form {
		if !strings.HasPrefix(k, "Filter.") {
			out[k] = vs
		}
	}
	for i, f := range filters {
		out.Set(fmt.Sprintf("Filter.%d.Name", i+1), f.name)
		for j, v := range f.values {
			out.Set(fmt.Sprintf("Filter.%d.Value.%d", i+1, j+1), v)
		}
	}
	return out
}

// isStateFilter tells the filters moto would apply to its own states,
// which the proxy's overlay changes.
func isStateFilter(name string) bool {
	return name == "instance-state-name" || name == "instance-state-code"
}

// matchesStateFilters applies stripped state filters (all must match,
// any value of each) to a shown state.
func matchesStateFilters(filters []ec2Filter, state string) bool {
	for _, f := range filters {
		want := state
		if f.name == "instance-state-code" {
			want = strconv.Itoa(stateCodes[state])
		}
		ok := false
		for _, v := range f.values {
			if v == want {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (p *Proxy) describeInstances(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	var kept, state []ec2Filter
	for _, f := range parseFilters(form) {
		if isStateFilter(f.name) {
			state = append(state, f)
		} else {
			kept = append(kept, f)
		}
	}
	var named []string
	for k, vs := range form {
		if strings.HasPrefix(k, "InstanceId.") && len(vs) > 0 {
			named = append(named, vs[0])
		}
	}
	sort.Strings(named)
	if len(state) > 0 {
		out := withFilters(form, kept)
		// The proxy filters after moto answers, so a page of moto's could
		// shrink to nothing: answer everything in one page instead.
		out.Del("MaxResults")
		out.Del("NextToken")
		body = []byte(out.Encode())
		r.Method = http.MethodPost
		r.URL.RawQuery = ""
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	answer, doc, ok := p.forwardXML(w, r, body, "DescribeInstances")
	if !ok {
		return
	}
	now := p.clock.Now()
	life := p.lifecycle()
	var gone []string
	if set := doc.Root().SelectElement("reservationSet"); set != nil {
		for _, res := range set.SelectElements("item") {
			instances := res.SelectElement("instancesSet")
			if instances == nil {
				continue
			}
			for _, inst := range instances.SelectElements("item") {
				id := childText(inst, "instanceId")
				stateEl := inst.SelectElement("instanceState")
				motoState := childText(stateEl, "name")
				rec := p.ec2.observe(c.region, id, motoState, now)
				shown, isGone := life.show(motoState, rec, now)
				switch {
				case isGone || now.Before(rec.listedFrom):
					gone = append(gone, id)
					instances.RemoveChild(inst)
				case !matchesStateFilters(state, shown):
					instances.RemoveChild(inst)
				default:
					setState(stateEl, shown)
					if !rec.startedAt.IsZero() {
						// moto keeps the first launch time; EC2 shows the last start.
						setText(inst, "launchTime", rec.startedAt.UTC().Format(time.RFC3339Nano))
					}
				}
			}
			if len(instances.SelectElements("item")) == 0 {
				set.RemoveChild(res)
			}
		}
	}
	if len(named) > 0 {
		var missing []string
		for _, id := range gone {
			for _, n := range named {
				if n == id {
					missing = append(missing, id)
				}
			}
		}
		if len(missing) > 0 {
			ec2Error(w, http.StatusBadRequest, "InvalidInstanceID.NotFound", notFoundMessage(missing))
			return
		}
	}
	p.writeXML(w, answer, doc)
}

// notFoundMessage is EC2's wording for instance ids it does not know.
func notFoundMessage(ids []string) string {
	if len(ids) == 1 {
		return fmt.Sprintf("The instance ID '%s' does not exist", ids[0])
	}
	return fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(ids, ", "))
}

func (p *Proxy) writeXML(w http.ResponseWriter, answer *upstreamAnswer, doc *etree.Document) {
	out, err := doc.WriteToBytes()
	if err != nil {
		p.forwardFailed(w, "writing rewritten answer", err)
		return
	}
	answer.body = out
	answer.write(w)
}

func childText(e *etree.Element, tag string) string {
	if e == nil {
		return ""
	}
	if c := e.SelectElement(tag); c != nil {
		return strings.TrimSpace(c.Text())
	}
	return ""
}

// setText sets the text of e's child tag, if e has one.
func setText(e *etree.Element, tag, text string) {
	if c := e.SelectElement(tag); c != nil {
		c.SetText(text)
	}
}

// setState writes a state into an <instanceState>-like element.
func setState(e *etree.Element, state string) {
	if e == nil {
		return
	}
	if code := e.SelectElement("code"); code != nil {
		code.SetText(strconv.Itoa(stateCodes[state]))
	}
	if name := e.SelectElement("name"); name != nil {
		name.SetText(state)
	}
}

func (p *Proxy) terminateInstances(w http.ResponseWriter, r *http.Request, c call, body []byte) {
	answer, doc, ok := p.forwardXML(w, r, body, "TerminateInstances")
	if !ok {
		return
	}
	now := p.clock.Now()
	life := p.lifecycle()
	if set := doc.Root().SelectElement("instancesSet"); set != nil {
		for _, item := range set.SelectElements("item") {
			id := childText(item, "instanceId")
			before, known := p.ec2.terminated(c.region, id, now)
			prev := item.SelectElement("previousState")
			if known {
				shown, _ := life.show(childText(prev, "name"), before, now)
				setState(prev, shown)
			}
			if !before.terminatedAt.IsZero() {
				// Terminated before: it shows where its shutdown has got to.
				shown, _ := life.show("terminated", before, now)
				setState(item.SelectElement("currentState"), shown)
			} else if p.cfg.ShuttingDownFor > 0 {
				setState(item.SelectElement("currentState"), "shutting-down")
			}
		}
	}
	p.writeXML(w, answer, doc)
}

// ec2Error answers in the EC2 Query API's error format.
func ec2Error(w http.ResponseWriter, status int, code, message string) {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+
		`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		html.EscapeString(code), html.EscapeString(message), requestID())
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// currentStates asks moto for the instances ids and returns the state each
// shows now; an instance moto no longer has, or that has left
// DescribeInstances, shows terminated.
func (p *Proxy) currentStates(ctx context.Context, region string, ids []string) (map[string]string, error) {
	states := map[string]string{}
	for _, id := range ids {
		states[id] = "terminated"
	}
	if len(ids) == 0 {
		return states, nil
	}
	now := p.clock.Now()
	life := p.lifecycle()
	pages := ec2.NewDescribeInstancesPaginator(p.moto.in(region).EC2, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: ids}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing instances %v: %w", ids, err)
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				id := aws.ToString(inst.InstanceId)
				motoState := string(inst.State.Name)
				rec := p.ec2.observe(region, id, motoState, now)
				if shown, gone := life.show(motoState, rec, now); !gone {
					states[id] = shown
				}
			}
		}
	}
	return states, nil
}
