package moto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	logstypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/beevik/etree"
)

// cfnState is what the proxy adds to moto's stacks: the custom resources
// it runs, and the status a stack shows while the proxy works on it.
type cfnState struct {
	mu         sync.Mutex
	stacks     map[string]*stackRecord // by stack id
	waiters    map[string]chan cfnReply
	changeSets map[string]*changeSet      // by id, and by region/stack/name
	aliases    map[string]string          // review stack id → the id of the stack created in its place
	explicit   map[string]map[string]bool // stack id → the parameters it was given values for
}

type stackRecord struct {
	id, name, region string
	tmpl             *template
	params           map[string]string
	customs          []string                  // custom resources, in creation order
	created          map[string]*customCreated // custom resources whose Create succeeded
	status, reason   string                    // shown instead of moto's; "" shows moto's
	events           []stackEvent              // shown before moto's, newest first
	deleting         bool
	awaiting         map[string]*awaited // resources waiting for their creation policy's signals
	// heldFrom and heldUntil bound, in real time (moto's), a wait for
	// signals: moto's own report of the stack complete falls within it.
	heldFrom, heldUntil time.Time
}

// hidesEvent tells whether a moto event is the stack's completion that
// moto reported while the proxy held the stack in progress.
func (st *stackRecord) hidesEvent(m *etree.Element) bool {
	if st.heldFrom.IsZero() || childText(m, "ResourceType") != "AWS::CloudFormation::Stack" {
		return false
	}
	if status := childText(m, "ResourceStatus"); status != "CREATE_COMPLETE" && status != "UPDATE_COMPLETE" {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, childText(m, "Timestamp"))
	return err == nil && !at.Before(st.heldFrom.Add(-2*time.Second)) && (st.heldUntil.IsZero() || !at.After(st.heldUntil))
}

type customCreated struct {
	physicalID string
	data       map[string]any
}

type stackEvent struct {
	id                                string
	at                                time.Time
	logicalID, physicalID, resourceTy string
	status, reason                    string
}

// cfnReply is what a custom resource PUTs to its ResponseURL.
type cfnReply struct {
	Status             string
	Reason             string
	PhysicalResourceId string
	StackId            string
	RequestId          string
	LogicalResourceId  string
	NoEcho             bool
	Data               map[string]any
}

func newCFNState() *cfnState {
	return &cfnState{stacks: map[string]*stackRecord{}, waiters: map[string]chan cfnReply{}, changeSets: map[string]*changeSet{}, aliases: map[string]string{}, explicit: map[string]map[string]bool{}}
}

func (s *cfnState) stack(id string) *stackRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stacks[id]
}

// setStatus shows a status (and reason) for a stack, and records the
// events that led to it.
func (s *cfnState) setStatus(st *stackRecord, status, reason string, events ...stackEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.status, st.reason = status, reason
	for _, e := range events {
		e.id = requestID()
		st.events = append([]stackEvent{e}, st.events...)
	}
}

func (p *Proxy) serveCloudFormation(w http.ResponseWriter, r *http.Request, c call) bool {
	form, body, err := readForm(r)
	if err != nil {
		cfnError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return true
	}
	if body, err = motoTemplateURL(r, form, body); err != nil {
		cfnError(w, http.StatusBadRequest, "ValidationError", err.Error())
		return true
	}
	body = p.aliased(r, form, body)
	switch form.Get("Action") {
	case "CreateStack":
		p.createStack(w, r, c, form, body)
	case "CreateChangeSet":
		p.createChangeSet(w, r, c, form, body)
	case "ExecuteChangeSet":
		p.executeChangeSet(w, r, c, form)
	case "DeleteChangeSet":
		p.deleteChangeSet(w, r, c, form)
	case "DescribeChangeSet":
		p.describeChangeSet(w, r, form, body)
	case "SignalResource":
		p.signalResource(w, r, c, form)
	case "UpdateStack":
		p.updateStack(w, r, c, form, body)
	case "DeleteStack":
		p.deleteStack(w, r, c, form, body)
	case "DescribeStacks", "ListStacks", "DescribeStackEvents":
		p.describeWithOverlay(w, r, body)
	default:
		return false
	}
	return true
}

// updateStack checks an update as AWS would, forwards it, and carries out
// what moto leaves out of it.
func (p *Proxy) updateStack(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	ctx := r.Context()
	stackID := p.keepPrevious(ctx, c.region, form.Get("StackName"), form)
	if stackID != "" {
		body = []byte(form.Encode())
		setBody(r, body)
	}
	tmplBody, err := p.templateOf(ctx, c.region, form)
	if err != nil {
		p.forwardFailed(w, "reading a stack update's template", err)
		return
	}
	if refusal, err := p.preflight(ctx, c, form, tmplBody, false); err != nil {
		p.forwardFailed(w, "checking a stack update", err)
		return
	} else if refusal != "" {
		cfnError(w, http.StatusBadRequest, "ValidationError", refusal)
		return
	}
	before := p.physicalIDs(ctx, c.region, form.Get("StackName"))
	answer, err := p.roundTrip(r, body)
	if err != nil {
		p.forwardFailed(w, "forwarding UpdateStack", err)
		return
	}
	defer answer.write(w)
	if answer.status != http.StatusOK || stackID == "" {
		return
	}
	p.cfn.given(stackID, paramList(form), true)
	p.afterUpdate(ctx, c.region, stackID, tmplBody, before)
}

// cfnError answers in CloudFormation's Query error format.
func cfnError(w http.ResponseWriter, status int, code, message string) {
	body := fmt.Sprintf(`<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">`+
		`<Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		html.EscapeString(code), html.EscapeString(message), requestID())
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}

// stackParameters reads Parameters.member.N.ParameterKey/ParameterValue.
func stackParameters(form url.Values) map[string]string {
	params := map[string]string{}
	for k, vs := range form {
		prefix, ok := strings.CutSuffix(k, ".ParameterKey")
		if !ok || !strings.HasPrefix(prefix, "Parameters.member.") || len(vs) == 0 {
			continue
		}
		if v, ok := form[prefix+".ParameterValue"]; ok && len(v) > 0 {
			params[vs[0]] = v[0]
		}
	}
	return params
}

// templateOf reads the request's template: TemplateBody, or TemplateURL
// from moto's S3.
func (p *Proxy) templateOf(ctx context.Context, region string, form url.Values) ([]byte, error) {
	if body := form.Get("TemplateBody"); body != "" {
		return []byte(body), nil
	}
	raw := form.Get("TemplateURL")
	if raw == "" {
		return nil, nil
	}
	bucket, key, err := s3Location(raw)
	if err != nil {
		return nil, err
	}
	out, err := p.moto.in(region).S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("fetching template %s: %w", raw, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// s3Location reads the bucket and key of an S3 object URL, virtual-hosted
// (bucket.s3.region.amazonaws.com/key) or path-style (any other host).
func s3Location(raw string) (bucket, key string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("template URL %q: %w", raw, err)
	}
	path := strings.TrimPrefix(u.Path, "/")
	if b, rest, ok := strings.Cut(u.Hostname(), ".s3"); ok && strings.HasSuffix(rest, ".amazonaws.com") {
		return b, path, nil
	}
	bucket, key, _ = strings.Cut(path, "/")
	if bucket == "" || key == "" {
		return "", "", fmt.Errorf("template URL %q names no S3 object", raw)
	}
	return bucket, key, nil
}

// namedResources are the resource types whose explicit names must be new
// in the account and region, and the property holding the name.
var namedResources = []struct{ typ, property string }{
	{"AWS::SQS::Queue", "QueueName"},
	{"AWS::Logs::LogGroup", "LogGroupName"},
	{"AWS::IAM::Role", "RoleName"},
	{"AWS::Lambda::Function", "FunctionName"},
	{"AWS::DynamoDB::Table", "TableName"},
	{"AWS::EC2::LaunchTemplate", "LaunchTemplateName"},
}

// preflight checks a template (body; nil: none given) as AWS would while
// creating its resources, and returns why it would fail ("" when it would
// not). AWS would create
// and roll back; the proxy refuses at once.
func (p *Proxy) preflight(ctx context.Context, c call, form url.Values, body []byte, create bool) (string, error) {
	t, ok := parseTemplate(body)
	if !ok {
		return "", nil // YAML: passed through unchecked
	}
	stackName := form.Get("StackName")
	rv := &resolver{
		region: c.region, accountID: defaultAccount, stackName: stackName,
		params: stackParameters(form), template: t,
		zones: func() ([]string, error) { return p.zones(ctx, c.region) },
	}
	m := p.moto.in(c.region)

	// a. reserved concurrency
	var usage *functionUsage
	var ownFunctions []string
	reserved := 0
	for _, id := range t.order {
		res := t.Resources[id]
		if res.Type != "AWS::Lambda::Function" {
			continue
		}
		n, ok := toIntProperty(rv, res.Properties["ReservedConcurrentExecutions"])
		if !ok {
			continue
		}
		if usage == nil {
			u, err := p.functions(ctx, c.region)
			if err != nil {
				return "", err
			}
			usage = &u
			if !create {
				ids, err := p.stackPhysicalIDs(ctx, c.region, stackName, "AWS::Lambda::Function")
				if err != nil {
					return "", err
				}
				for _, id := range ids {
					ownFunctions = append(ownFunctions, functionName(id))
				}
			}
			for _, rid := range t.order {
				if name, ok := rv.resolvedString(t.Resources[rid].Properties["FunctionName"]); ok {
					ownFunctions = append(ownFunctions, name)
				}
			}
		}
		reserved += n
		if p.cfg.ConcurrencyLimit-(usage.reservedExcept(ownFunctions...)+reserved) < minUnreserved {
			return handlerFailure(id, reservationMessage(), "Lambda", 400, "InvalidRequest"), nil
		}
	}

	for _, id := range t.order {
		res := t.Resources[id]
		// b. bucket names other accounts own
		if res.Type == "AWS::S3::Bucket" {
			if name, ok := rv.resolvedString(res.Properties["BucketName"]); ok && slices.Contains(p.cfg.TakenBucketNames, name) {
				return fmt.Sprintf("%s: %s already exists", id, name), nil
			}
		}
		// c. names already taken in this account and region
		if create {
			for _, nr := range namedResources {
				if res.Type != nr.typ {
					continue
				}
				name, ok := rv.resolvedString(res.Properties[nr.property])
				if !ok {
					continue
				}
				if nr.typ == "AWS::SQS::Queue" && p.sqs.held(c.region, name, p.clock.Now()) {
					return handlerFailure(id, queueDeletedRecentlyMessage, "Sqs", 400, "GeneralServiceException"), nil
				}
				exists, err := p.exists(ctx, m, nr.typ, name)
				if err != nil {
					return "", err
				}
				if exists {
					return fmt.Sprintf("%s: Resource of type '%s' with identifier '%s' already exists.", id, nr.typ, name), nil
				}
			}
		}
		// d. an instance's subnet and Availability Zone disagree
		if res.Type == "AWS::EC2::Instance" {
			subnet, ok1 := rv.resolvedString(res.Properties["SubnetId"])
			az, ok2 := rv.resolvedString(res.Properties["AvailabilityZone"])
			if ok1 && ok2 {
				out, err := m.EC2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{subnet}})
				if err == nil && len(out.Subnets) > 0 {
					if actual := aws.ToString(out.Subnets[0].AvailabilityZone); actual != az {
						return fmt.Sprintf("%s: Value (%s) for parameter availabilityZone is invalid. Subnet '%s' is in the availability zone %s",
							id, az, subnet, actual), nil
					}
				}
			}
		}
	}
	return "", nil
}

// defaultAccount is moto's account, the one every emulated caller is in.
const defaultAccount = "123456789012"

// handlerFailure words a failure as CloudFormation's resource event does
// for resource types with registry handlers.
func handlerFailure(logicalID, message, service string, status int, code string) string {
	return fmt.Sprintf(`%s: Resource handler returned message: "%s (Service: %s, Status Code: %d, Request ID: %s)" (RequestToken: %s, HandlerErrorCode: %s)`,
		logicalID, message, service, status, requestID(), requestID(), code)
}

func toIntProperty(rv *resolver, v any) (int, bool) {
	if v == nil {
		return 0, false
	}
	r, ok := rv.resolve(v)
	if !ok {
		return 0, false
	}
	return toInt(r)
}

// exists tells whether a named resource of typ already exists in moto.
func (p *Proxy) exists(ctx context.Context, m *regionClients, typ, name string) (bool, error) {
	switch typ {
	case "AWS::SQS::Queue":
		_, err := m.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		return err == nil, nil
	case "AWS::Logs::LogGroup":
		out, err := m.Logs.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(name)})
		if err != nil {
			return false, fmt.Errorf("describing log groups: %w", err)
		}
		return slices.ContainsFunc(out.LogGroups, func(g logstypes.LogGroup) bool { return aws.ToString(g.LogGroupName) == name }), nil
	case "AWS::IAM::Role":
		return p.moto.iamRoleExists(ctx, name)
	case "AWS::Lambda::Function":
		_, err := m.Lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		return err == nil, nil
	case "AWS::DynamoDB::Table":
		return p.moto.dynamoTableExists(ctx, m.region, name)
	case "AWS::EC2::LaunchTemplate":
		out, err := m.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{})
		if err != nil {
			return false, fmt.Errorf("describing launch templates: %w", err)
		}
		return slices.ContainsFunc(out.LaunchTemplates, func(lt ec2types.LaunchTemplate) bool { return aws.ToString(lt.LaunchTemplateName) == name }), nil
	}
	return false, nil
}

// stackPhysicalIDs lists the physical ids of a stack's resources of typ;
// none when there is no such stack.
func (p *Proxy) stackPhysicalIDs(ctx context.Context, region, stack, typ string) ([]string, error) {
	res, err := p.stackResources(ctx, region, stack)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range res {
		if aws.ToString(r.ResourceType) == typ && r.PhysicalResourceId != nil {
			ids = append(ids, *r.PhysicalResourceId)
		}
	}
	return ids, nil
}

func (p *Proxy) stackResources(ctx context.Context, region, stack string) ([]cfntypes.StackResource, error) {
	out, err := p.moto.in(region).CFN.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: aws.String(stack)})
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil, nil
		}
		return nil, fmt.Errorf("describing resources of stack %s: %w", stack, err)
	}
	return out.StackResources, nil
}

func (p *Proxy) createStack(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	ctx := r.Context()
	tmplBody, err := p.templateOf(ctx, c.region, form)
	if err != nil {
		p.forwardFailed(w, "reading a new stack's template", err)
		return
	}
	refusal, err := p.preflight(ctx, c, form, tmplBody, true)
	if err != nil {
		p.forwardFailed(w, "checking a new stack", err)
		return
	}
	if refusal != "" {
		p.log.Info("CreateStack refused", "stack", form.Get("StackName"), "reason", refusal)
		cfnError(w, http.StatusBadRequest, "ValidationError", refusal)
		return
	}
	answer, err := p.roundTrip(r, body)
	if err != nil {
		p.forwardFailed(w, "forwarding CreateStack", err)
		return
	}
	defer answer.write(w)
	if answer.status == http.StatusOK {
		p.afterCreate(ctx, answer.body, c.region, form, tmplBody)
	}
}

// afterCreate carries out, for a stack moto has just created (its
// CreateStack answer), what moto leaves undone: the resources of types it
// does not implement, the custom resources, the creation policies.
func (p *Proxy) afterCreate(ctx context.Context, answer []byte, region string, form url.Values, tmplBody []byte) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(answer); err != nil {
		p.log.Error("reading moto's CreateStack answer", "err", err)
		return
	}
	stackID := strings.TrimSpace(doc.FindElement("//StackId").Text())
	p.cfn.given(stackID, paramList(form), false)
	t, ok := parseTemplate(tmplBody)
	if !ok {
		return
	}
	customs, _ := t.customResources()
	st := &stackRecord{
		id: stackID, name: form.Get("StackName"), region: region,
		tmpl: t, params: stackParameters(form), customs: customs, created: map[string]*customCreated{},
	}
	failed, err := p.applyUnimplemented(ctx, region, stackID, st.name, t, st.params)
	if err != nil {
		p.log.Info("a resource moto does not implement failed to create", "stack", st.name, "resource", failed, "err", err)
		p.failCreate(st, failed, err.Error())
		return
	}
	p.tagGroupInstances(ctx, st)
	signalled := signalsToAwait(t, nil, nil)
	if len(customs) == 0 && len(signalled) == 0 {
		return
	}
	if len(customs) > 0 && p.cfg.Lambdas == nil {
		p.failCreate(st, customs[0], "The emulated cloud has no Lambda invoker to run custom resources.")
		return
	}
	p.cfn.mu.Lock()
	p.cfn.stacks[stackID] = st
	p.cfn.mu.Unlock()
	p.awaitSignals(st, signalled, false)
	if len(customs) > 0 {
		p.background(func(ctx context.Context) { p.createCustomResources(ctx, st) })
	}
}

// failCreate shows a new stack rolled back for the failure of one of its
// resources, none of its custom resources created yet.
func (p *Proxy) failCreate(st *stackRecord, logicalID, reason string) {
	p.cfn.mu.Lock()
	p.cfn.stacks[st.id] = st
	p.cfn.mu.Unlock()
	now := p.clock.Now()
	p.cfn.setStatus(st, "ROLLBACK_COMPLETE", fmt.Sprintf("The following resource(s) failed to create: [%s]. %s", logicalID, reason),
		stackEvent{at: now, logicalID: logicalID, resourceTy: st.tmpl.Resources[logicalID].Type, status: "CREATE_FAILED", reason: reason},
		stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "ROLLBACK_COMPLETE"})
}

// createCustomResources runs each custom resource's Create, one at a time,
// and tells moto of each success; the first failure rolls the stack back.
func (p *Proxy) createCustomResources(ctx context.Context, st *stackRecord) {
	for _, id := range st.customs {
		reply, err := p.runCustom(ctx, st, id, "Create", "")
		if ctx.Err() != nil {
			return
		}
		if err == nil && reply.Status == "SUCCESS" {
			err = p.tellMoto(ctx, st, id, reply)
		}
		if err == nil && reply.Status != "SUCCESS" {
			//lint:ignore ST1005 CloudFormation's own wording, which users search for
			err = fmt.Errorf("Received response status [%s] from custom resource. Message returned: %s (RequestId: %s)",
				reply.Status, reply.Reason, reply.RequestId)
		}
		if err != nil {
			p.log.Info("custom resource failed to create", "stack", st.name, "resource", id, "err", err)
			p.rollBack(ctx, st, id, err.Error())
			return
		}
		p.cfn.mu.Lock()
		st.created[id] = &customCreated{physicalID: reply.PhysicalResourceId, data: reply.Data}
		p.cfn.mu.Unlock()
	}
}

// rollBack deletes the custom resources already created, as CloudFormation
// does when a resource fails to create, and leaves the stack in
// ROLLBACK_COMPLETE. The stack's other resources stay in moto until the
// stack is deleted.
func (p *Proxy) rollBack(ctx context.Context, st *stackRecord, failed, reason string) {
	now := p.clock.Now()
	stackReason := fmt.Sprintf("The following resource(s) failed to create: [%s]. ", failed)
	p.cfn.setStatus(st, "ROLLBACK_IN_PROGRESS", stackReason,
		stackEvent{at: now, logicalID: failed, resourceTy: st.tmpl.Resources[failed].Type, status: "CREATE_FAILED", reason: reason},
		stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "ROLLBACK_IN_PROGRESS",
			reason: stackReason + "Rollback requested by user."})
	for i := len(st.customs) - 1; i >= 0; i-- {
		id := st.customs[i]
		p.cfn.mu.Lock()
		created := st.created[id]
		p.cfn.mu.Unlock()
		if created == nil {
			continue
		}
		if _, err := p.runCustom(ctx, st, id, "Delete", created.physicalID); err != nil {
			p.log.Warn("rolling back a custom resource", "stack", st.name, "resource", id, "err", err)
		}
		p.cfn.mu.Lock()
		delete(st.created, id)
		p.cfn.mu.Unlock()
	}
	p.cfn.setStatus(st, "ROLLBACK_COMPLETE", stackReason,
		stackEvent{at: p.clock.Now(), logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "ROLLBACK_COMPLETE"})
}

// tellMoto passes a custom resource's success to moto's own response
// endpoint, which completes the resource (and so the stack) with its Data.
func (p *Proxy) tellMoto(ctx context.Context, st *stackRecord, logicalID string, reply cfnReply) error {
	data := reply.Data
	if data == nil {
		data = map[string]any{}
	}
	body, err := json.Marshal(map[string]any{"Status": "SUCCESS", "StackId": st.id, "LogicalResourceId": logicalID, "Data": data})
	if err != nil {
		return err
	}
	target := fmt.Sprintf("%s/cloudformation_%s/cfnresponse?stack=%s", p.cfg.Upstream, st.region, url.QueryEscape(st.id))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Host = "cloudformation." + st.region + ".amazonaws.com"
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("passing custom resource %s's response to moto: %w", logicalID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("passing custom resource %s's response to moto: HTTP %d: %s", logicalID, resp.StatusCode, msg)
	}
	return nil
}

// runCustom sends one request to a custom resource's function and waits
// for its response.
func (p *Proxy) runCustom(ctx context.Context, st *stackRecord, logicalID, requestType, physicalID string) (cfnReply, error) {
	res := st.tmpl.Resources[logicalID]
	physical := map[string]string{}
	resources, err := p.stackResources(ctx, st.region, st.id)
	if err != nil {
		return cfnReply{}, err
	}
	for _, r := range resources {
		if r.PhysicalResourceId != nil {
			physical[aws.ToString(r.LogicalResourceId)] = *r.PhysicalResourceId
		}
	}
	p.cfn.mu.Lock()
	customData := map[string]map[string]any{}
	for id, c := range st.created {
		physical[id] = c.physicalID
		customData[id] = c.data
	}
	p.cfn.mu.Unlock()
	rv := &resolver{
		region: st.region, accountID: defaultAccount, stackName: st.name, stackID: st.id,
		params: st.params, template: st.tmpl, physical: physical, customData: customData,
		zones: func() ([]string, error) { return p.zones(ctx, st.region) },
	}
	function, err := serviceTokenFunction(rv, res.Properties["ServiceToken"])
	if err != nil {
		return cfnReply{}, fmt.Errorf("%s: %w", logicalID, err)
	}
	props, _ := rv.resolvePartial(res.Properties).(map[string]any)
	if props == nil {
		props = map[string]any{}
	}
	if !strings.HasPrefix(function, "arn:") {
		function = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", st.region, defaultAccount, function)
	}
	props["ServiceToken"] = function
	requestID := requestID()
	event := map[string]any{
		"RequestType":        requestType,
		"ServiceToken":       function,
		"ResponseURL":        p.url + adminPrefix + "cfn-response?request=" + requestID,
		"StackId":            st.id,
		"RequestId":          requestID,
		"ResourceType":       res.Type,
		"LogicalResourceId":  logicalID,
		"ResourceProperties": props,
	}
	if physicalID != "" {
		event["PhysicalResourceId"] = physicalID
	}
	payload, err := json.Marshal(event)
	if err != nil {
		return cfnReply{}, err
	}
	replies := make(chan cfnReply, 1)
	p.cfn.mu.Lock()
	p.cfn.waiters[requestID] = replies
	p.cfn.mu.Unlock()
	defer func() {
		p.cfn.mu.Lock()
		delete(p.cfn.waiters, requestID)
		p.cfn.mu.Unlock()
	}()
	p.log.Info("running custom resource", "stack", st.name, "resource", logicalID, "request", requestType, "function", function)
	if err := p.cfg.Lambdas.Invoke(ctx, st.region, functionName(function), payload); err != nil {
		return cfnReply{}, fmt.Errorf("invoking %s for %s: %w", function, logicalID, err)
	}
	timeout := time.NewTimer(p.cfg.CustomResourceTimeout)
	defer timeout.Stop()
	select {
	case reply := <-replies:
		return reply, nil
	case <-timeout.C:
		//lint:ignore ST1005 CloudFormation's own wording, which users search for
		return cfnReply{}, fmt.Errorf("CloudFormation did not receive a response from your Custom Resource. Please check your logs for requestId [%s].", requestID)
	case <-ctx.Done():
		return cfnReply{}, ctx.Err()
	}
}

// serviceTokenFunction is the function a ServiceToken names: Fn::GetAtt
// [L, Arn] of a function in the stack (its physical id is its name) or
// an ARN.
func serviceTokenFunction(rv *resolver, token any) (string, error) {
	if m, ok := token.(map[string]any); ok {
		if att, ok := m["Fn::GetAtt"].([]any); ok && len(att) == 2 {
			if name, _ := att[0].(string); name != "" {
				if id, ok := rv.physical[name]; ok {
					return functionName(id), nil
				}
				return "", fmt.Errorf("ServiceToken: function %s is not in the stack", name)
			}
		}
	}
	s, ok := rv.resolvedString(token)
	if !ok || s == "" {
		return "", errors.New("ServiceToken cannot be resolved")
	}
	return s, nil
}

// cfnResponse receives a custom resource's response, PUT to the
// ResponseURL the proxy gave it (unsigned, as AWS's pre-signed S3 URLs).
func (p *Proxy) cfnResponse(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		adminError(w, http.StatusMethodNotAllowed, "PUT the custom resource response")
		return
	}
	var reply cfnReply
	if err := json.NewDecoder(r.Body).Decode(&reply); err != nil {
		adminError(w, http.StatusBadRequest, "the response is not JSON: "+err.Error())
		return
	}
	id := firstOf(r.URL.Query().Get("request"), reply.RequestId)
	p.cfn.mu.Lock()
	waiter := p.cfn.waiters[id]
	delete(p.cfn.waiters, id)
	p.cfn.mu.Unlock()
	if waiter == nil {
		adminError(w, http.StatusNotFound, "no custom resource request "+id+" is waiting")
		return
	}
	waiter <- reply
	w.WriteHeader(http.StatusOK)
}

// deleteStack answers at once, as AWS does, and deletes in the background:
// custom resources first, then the dependency check AWS would fail on,
// then moto's stack.
func (p *Proxy) deleteStack(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	ctx := r.Context()
	st, err := p.stackFor(ctx, c.region, form.Get("StackName"))
	if err != nil {
		p.forwardFailed(w, "looking up a stack to delete", err)
		return
	}
	if st == nil {
		p.forward.ServeHTTP(w, r) // no such stack (or already deleted): moto answers
		return
	}
	p.cfn.mu.Lock()
	already := st.deleting
	st.deleting = true
	p.cfn.mu.Unlock()
	if !already {
		p.cfn.setStatus(st, "DELETE_IN_PROGRESS", "User Initiated",
			stackEvent{at: p.clock.Now(), logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack",
				status: "DELETE_IN_PROGRESS", reason: "User Initiated"})
		p.background(func(ctx context.Context) { p.runDelete(ctx, st) })
	}
	out := fmt.Sprintf(`<DeleteStackResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">`+
		`<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></DeleteStackResponse>`, requestID())
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(out))
}

// stackFor finds the record of a live stack by name or id, making one from
// moto's view for a stack the proxy did not create (its custom resources
// are those moto shows complete). nil: no live stack.
func (p *Proxy) stackFor(ctx context.Context, region, nameOrID string) (*stackRecord, error) {
	m := p.moto.in(region).CFN
	out, err := m.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(nameOrID)})
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil, nil
		}
		return nil, fmt.Errorf("describing stack %s: %w", nameOrID, err)
	}
	if len(out.Stacks) == 0 || out.Stacks[0].StackStatus == cfntypes.StackStatusDeleteComplete {
		return nil, nil
	}
	stack := out.Stacks[0]
	id := aws.ToString(stack.StackId)
	if st := p.cfn.stack(id); st != nil {
		return st, nil
	}
	st := &stackRecord{id: id, name: aws.ToString(stack.StackName), region: region, created: map[string]*customCreated{}, params: map[string]string{}}
	for _, prm := range stack.Parameters {
		st.params[aws.ToString(prm.ParameterKey)] = aws.ToString(prm.ParameterValue)
	}
	tmpl, err := m.GetTemplate(ctx, &cloudformation.GetTemplateInput{StackName: aws.String(id)})
	if err != nil {
		return nil, fmt.Errorf("reading template of stack %s: %w", id, err)
	}
	st.tmpl, _ = parseTemplate([]byte(aws.ToString(tmpl.TemplateBody)))
	if st.tmpl == nil {
		st.tmpl = &template{}
	}
	st.customs, _ = st.tmpl.customResources()
	resources, err := p.stackResources(ctx, region, id)
	if err != nil {
		return nil, err
	}
	for _, r := range resources {
		if isCustomResource(aws.ToString(r.ResourceType)) && r.ResourceStatus == cfntypes.ResourceStatusCreateComplete {
			st.created[aws.ToString(r.LogicalResourceId)] = &customCreated{physicalID: aws.ToString(r.PhysicalResourceId)}
		}
	}
	p.cfn.mu.Lock()
	defer p.cfn.mu.Unlock()
	if cur := p.cfn.stacks[id]; cur != nil {
		return cur, nil
	}
	p.cfn.stacks[id] = st
	return st, nil
}

func (p *Proxy) runDelete(ctx context.Context, st *stackRecord) {
	fail := func(logicalID, resourceType, reason string) {
		p.log.Info("stack failed to delete", "stack", st.name, "resource", logicalID, "reason", reason)
		now := p.clock.Now()
		stackReason := fmt.Sprintf("The following resource(s) failed to delete: [%s]. ", logicalID)
		p.cfn.setStatus(st, "DELETE_FAILED", stackReason,
			stackEvent{at: now, logicalID: logicalID, resourceTy: resourceType, status: "DELETE_FAILED", reason: reason},
			stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "DELETE_FAILED", reason: stackReason})
		p.cfn.mu.Lock()
		st.deleting = false
		p.cfn.mu.Unlock()
	}
	for i := len(st.customs) - 1; i >= 0; i-- {
		id := st.customs[i]
		p.cfn.mu.Lock()
		created := st.created[id]
		p.cfn.mu.Unlock()
		if created == nil {
			continue
		}
		reply, err := p.runCustom(ctx, st, id, "Delete", created.physicalID)
		if ctx.Err() != nil {
			return
		}
		if err == nil && reply.Status != "SUCCESS" {
			//lint:ignore ST1005 CloudFormation's own wording, which users search for
			err = fmt.Errorf("Received response status [%s] from custom resource. Message returned: %s (RequestId: %s)",
				reply.Status, reply.Reason, reply.RequestId)
		}
		if err != nil {
			fail(id, st.tmpl.Resources[id].Type, err.Error())
			return
		}
		p.cfn.mu.Lock()
		delete(st.created, id)
		p.cfn.mu.Unlock()
	}
	if blocked, err := p.waitForDependents(ctx, st); err != nil {
		if ctx.Err() == nil {
			p.log.Error("checking a stack's dependents", "stack", st.name, "err", err)
			fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		}
		return
	} else if blocked != nil {
		fail(blocked.logicalID, blocked.resourceTy, blocked.reason)
		return
	}
	instances, err := p.stackPhysicalIDs(ctx, st.region, st.id, "AWS::EC2::Instance")
	if err != nil {
		fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		return
	}
	grouped, err := p.groupInstances(ctx, st.region, st.id)
	if err != nil {
		fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		return
	}
	for id := range grouped {
		instances = append(instances, id)
	}
	queues, err := p.stackPhysicalIDs(ctx, st.region, st.id, "AWS::SQS::Queue")
	if err != nil {
		fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		return
	}
	if err := p.deleteNetworkPlumbing(ctx, st); err != nil {
		fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		return
	}
	if _, err := p.moto.in(st.region).CFN.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(st.id)}); err != nil {
		fail(st.name, "AWS::CloudFormation::Stack", err.Error())
		return
	}
	for _, q := range queues {
		p.sqs.deleted(st.region, queueName(q), p.clock.Now())
	}
	// CloudFormation deletes an instance, or a group of them, by
	// terminating it and waiting until it has: by the time the stack is
	// gone, so is its shutdown.
	ended := p.clock.Now().Add(-p.lifecycle().shuttingDownFor)
	for _, id := range instances {
		p.ec2.terminated(st.region, id, ended)
	}
	p.cfn.mu.Lock()
	delete(p.cfn.stacks, st.id)
	p.cfn.mu.Unlock()
}

// waitForDependents finds an instance outside the stack that uses one of
// its security groups or subnets, which AWS would refuse to delete. It
// waits for instances already shutting down, as CloudFormation retries;
// it returns the failure of the first resource still in use.
func (p *Proxy) waitForDependents(ctx context.Context, st *stackRecord) (*stackEvent, error) {
	resources, err := p.stackResources(ctx, st.region, st.id)
	if err != nil {
		return nil, err
	}
	guarded := map[string]cfntypes.StackResource{} // physical id → resource
	own := map[string]bool{}
	for _, r := range resources {
		switch aws.ToString(r.ResourceType) {
		case "AWS::EC2::SecurityGroup", "AWS::EC2::Subnet":
			guarded[aws.ToString(r.PhysicalResourceId)] = r
		case "AWS::EC2::Instance":
			own[aws.ToString(r.PhysicalResourceId)] = true
		}
	}
	if len(guarded) == 0 {
		return nil, nil
	}
	// The stack's groups' instances go with their groups.
	grouped, err := p.groupInstances(ctx, st.region, st.id)
	if err != nil {
		return nil, err
	}
	for id := range grouped {
		own[id] = true
	}
	deadline := time.Now().Add(p.cfg.CustomResourceTimeout)
	for {
		// Past the deadline, an instance still shutting down fails the
		// deletion as a running one does.
		patient := time.Now().Before(deadline)
		blocked, waiting, err := p.dependents(ctx, st.region, guarded, own, patient)
		if err != nil || blocked != nil || !waiting {
			return blocked, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *Proxy) dependents(ctx context.Context, region string, guarded map[string]cfntypes.StackResource, own map[string]bool, patient bool) (blocked *stackEvent, waiting bool, err error) {
	now := p.clock.Now()
	life := p.lifecycle()
	pages := ec2.NewDescribeInstancesPaginator(p.moto.in(region).EC2, &ec2.DescribeInstancesInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("describing instances: %w", err)
		}
		for _, res := range page.Reservations {
			for _, inst := range res.Instances {
				id := aws.ToString(inst.InstanceId)
				motoState := string(inst.State.Name)
				shown, _ := life.show(motoState, p.ec2.observe(region, id, motoState, now), now)
				if own[id] || shown == "terminated" {
					continue
				}
				uses := []string{aws.ToString(inst.SubnetId)}
				for _, g := range inst.SecurityGroups {
					uses = append(uses, aws.ToString(g.GroupId), aws.ToString(g.GroupName))
				}
				for _, ni := range inst.NetworkInterfaces {
					for _, g := range ni.Groups {
						uses = append(uses, aws.ToString(g.GroupId))
					}
				}
				for _, u := range uses {
					r, ok := guarded[u]
					if !ok || u == "" {
						continue
					}
					if shown == "shutting-down" && patient {
						waiting = true
						continue
					}
					reason := fmt.Sprintf("resource %s has a dependent object", u)
					if aws.ToString(r.ResourceType) == "AWS::EC2::Subnet" {
						reason = fmt.Sprintf("The subnet '%s' has dependencies and cannot be deleted.", u)
					}
					return &stackEvent{logicalID: aws.ToString(r.LogicalResourceId), resourceTy: aws.ToString(r.ResourceType), reason: reason}, false, nil
				}
			}
		}
	}
	return nil, waiting, nil
}

// describeWithOverlay forwards DescribeStacks, ListStacks and
// DescribeStackEvents and shows the proxy's status and events of the
// stacks it works on.
func (p *Proxy) describeWithOverlay(w http.ResponseWriter, r *http.Request, body []byte) {
	answer, err := p.roundTrip(r, body)
	if err != nil {
		p.forwardFailed(w, "forwarding a stack description", err)
		return
	}
	p.cfn.mu.Lock()
	empty := len(p.cfn.stacks) == 0
	p.cfn.mu.Unlock()
	if answer.status != http.StatusOK || empty {
		answer.write(w)
		return
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(answer.body); err != nil {
		p.forwardFailed(w, "reading moto's stack description", err)
		return
	}
	p.cfn.mu.Lock()
	defer p.cfn.mu.Unlock()
	for _, member := range doc.FindElements("//Stacks/member") {
		p.overlayStatus(member, true)
	}
	for _, member := range doc.FindElements("//StackSummaries/member") {
		p.overlayStatus(member, false)
	}
	if events := doc.FindElement("//StackEvents"); events != nil {
		if first := events.SelectElement("member"); first != nil {
			if st := p.cfn.stacks[childText(first, "StackId")]; st != nil {
				mergeEvents(events, st)
			}
		}
	}
	p.writeXML(w, answer, doc)
}

// mergeEvents puts the proxy's events of a stack among moto's, newest
// first as CloudFormation lists them, leaving out the stack's completion
// moto reported while the proxy held it in progress (waiting for signals);
// p.cfn.mu is held.
func mergeEvents(events *etree.Element, st *stackRecord) {
	var all []*etree.Element
	for _, m := range events.SelectElements("member") {
		events.RemoveChild(m)
		if !st.hidesEvent(m) {
			all = append(all, m)
		}
	}
	for _, e := range st.events {
		all = append(all, eventElement(st, e))
	}
	at := func(m *etree.Element) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, childText(m, "Timestamp"))
		return t
	}
	slices.SortStableFunc(all, func(a, b *etree.Element) int { return at(b).Compare(at(a)) })
	for _, m := range all {
		events.AddChild(m)
	}
}

// overlayStatus shows a stack's overlay status in a Stacks or
// StackSummaries member; p.cfn.mu is held.
func (p *Proxy) overlayStatus(member *etree.Element, full bool) {
	st := p.cfn.stacks[childText(member, "StackId")]
	if st == nil || st.status == "" {
		return
	}
	status := member.SelectElement("StackStatus")
	if status == nil {
		return
	}
	status.SetText(st.status)
	reason := member.SelectElement("StackStatusReason")
	if reason == nil {
		reason = etree.NewElement("StackStatusReason")
		member.InsertChildAt(status.Index()+1, reason)
	}
	reason.SetText(st.reason)
	if full && st.status == "ROLLBACK_COMPLETE" {
		if outputs := member.SelectElement("Outputs"); outputs != nil {
			member.RemoveChild(outputs)
		}
	}
}

func eventElement(st *stackRecord, e stackEvent) *etree.Element {
	m := etree.NewElement("member")
	add := func(tag, text string) {
		if text != "" {
			m.CreateElement(tag).SetText(text)
		}
	}
	add("StackId", st.id)
	add("EventId", e.id)
	add("StackName", st.name)
	add("LogicalResourceId", e.logicalID)
	add("PhysicalResourceId", e.physicalID)
	add("ResourceType", e.resourceTy)
	add("Timestamp", e.at.UTC().Format("2006-01-02T15:04:05.000Z"))
	add("ResourceStatus", e.status)
	add("ResourceStatusReason", e.reason)
	return m
}
