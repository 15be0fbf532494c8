package moto

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/beevik/etree"
)

// Change sets are how the CDK CLI deploys (cdk deploy, cdk bootstrap).
// moto keeps and describes them, but executes one through its update
// path, which computes no outputs and runs no custom resources. So the
// proxy keeps each change set's request and executes it itself: a CREATE
// change set as a CreateStack (moto's review stack replaced by the real
// one), an UPDATE change set as an UpdateStack, each with the checks and
// custom resources of those actions.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html

// changeSet is a CreateChangeSet request the proxy will execute.
type changeSet struct {
	id, name, stackID, stackName, region string
	create                               bool // ChangeSetType CREATE (else UPDATE)
	form                                 url.Values
}

// aliased rewrites a request naming a change set's review stack (by its
// id, as the CDK CLI follows it) to the stack that replaced it.
func (p *Proxy) aliased(r *http.Request, form url.Values, body []byte) []byte {
	p.cfn.mu.Lock()
	to, ok := p.cfn.aliases[form.Get("StackName")]
	p.cfn.mu.Unlock()
	if !ok {
		return body
	}
	form.Set("StackName", to)
	rewritten := []byte(form.Encode())
	setBody(r, rewritten)
	return rewritten
}

// changeSetKey finds a change set by its name within a stack.
func changeSetKey(region, stack, name string) string { return region + "/" + stack + "/" + name }

// isAWSS3URL tells whether a template URL names AWS's S3, which moto's
// CloudFormation can read; any other host is this endpoint, whose S3 URLs
// (path-style, http://127.0.0.1:port/bucket/key, as the CDK CLI makes
// them from AWS_ENDPOINT_URL) moto would take for a bucket named "127".
func isAWSS3URL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.HasSuffix(u.Hostname(), ".amazonaws.com")
}

// motoTemplateURL rewrites a request's TemplateURL at this endpoint into
// the path-style AWS URL of the same object, which moto resolves against
// its own S3; the request is then forwarded with the rewritten body.
func motoTemplateURL(r *http.Request, form url.Values, body []byte) ([]byte, error) {
	raw := form.Get("TemplateURL")
	if raw == "" || isAWSS3URL(raw) {
		return body, nil
	}
	bucket, key, err := s3Location(raw)
	if err != nil {
		return nil, err
	}
	form.Set("TemplateURL", "https://s3.amazonaws.com/"+bucket+"/"+key)
	rewritten := []byte(form.Encode())
	setBody(r, rewritten)
	return rewritten, nil
}

func (p *Proxy) createChangeSet(w http.ResponseWriter, r *http.Request, c call, form url.Values, body []byte) {
	answer, doc, ok := p.forwardXML(w, r, body, "CreateChangeSet")
	if !ok {
		return
	}
	defer answer.write(w)
	cs := &changeSet{
		id:        strings.TrimSpace(textOf(doc, "//Id")),
		stackID:   strings.TrimSpace(textOf(doc, "//StackId")),
		name:      form.Get("ChangeSetName"),
		stackName: form.Get("StackName"),
		region:    c.region,
		create:    form.Get("ChangeSetType") == "CREATE",
		form:      form,
	}
	p.cfn.mu.Lock()
	defer p.cfn.mu.Unlock()
	p.cfn.changeSets[cs.id] = cs
	p.cfn.changeSets[changeSetKey(c.region, cs.stackName, cs.name)] = cs
	p.cfn.changeSets[changeSetKey(c.region, cs.stackID, cs.name)] = cs
}

// deleteChangeSet deletes a change set moto has and, as CloudFormation
// does (the CDK CLI counts on it before every update), succeeds for one
// it has not; moto fails on those.
func (p *Proxy) deleteChangeSet(w http.ResponseWriter, r *http.Request, c call, form url.Values) {
	_, err := p.moto.in(c.region).CFN.DescribeChangeSet(r.Context(), &cloudformation.DescribeChangeSetInput{
		ChangeSetName: aws.String(form.Get("ChangeSetName")), StackName: optional(form.Get("StackName")),
	})
	if err != nil {
		cfnAnswer(w, "DeleteChangeSet")
		return
	}
	p.forward.ServeHTTP(w, r)
}

// describeChangeSet answers a change set moto does not know with
// ChangeSetNotFound (404), as CloudFormation does, where moto answers a
// ValidationError: the CDK CLI waits for that answer after deleting one.
func (p *Proxy) describeChangeSet(w http.ResponseWriter, r *http.Request, form url.Values, body []byte) {
	answer, err := p.roundTrip(r, body)
	if err != nil {
		p.forwardFailed(w, "forwarding DescribeChangeSet", err)
		return
	}
	if answer.status != http.StatusBadRequest || !bytes.Contains(answer.body, []byte("<Code>ValidationError</Code>")) {
		answer.write(w)
		return
	}
	cfnError(w, http.StatusNotFound, "ChangeSetNotFound", fmt.Sprintf("ChangeSet [%s] does not exist", form.Get("ChangeSetName")))
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func textOf(doc *etree.Document, path string) string {
	if e := doc.FindElement(path); e != nil {
		return e.Text()
	}
	return ""
}

// takeChangeSet finds and forgets the change set an ExecuteChangeSet
// names (by ARN, or by name and stack); nil if the proxy has none.
func (p *Proxy) takeChangeSet(region string, form url.Values) *changeSet {
	name := form.Get("ChangeSetName")
	p.cfn.mu.Lock()
	defer p.cfn.mu.Unlock()
	cs := p.cfn.changeSets[name]
	if cs == nil {
		cs = p.cfn.changeSets[changeSetKey(region, form.Get("StackName"), name)]
	}
	if cs == nil {
		return nil
	}
	for k, v := range p.cfn.changeSets {
		if v == cs {
			delete(p.cfn.changeSets, k)
		}
	}
	return cs
}

func (p *Proxy) executeChangeSet(w http.ResponseWriter, r *http.Request, c call, form url.Values) {
	cs := p.takeChangeSet(c.region, form)
	if cs == nil {
		p.forward.ServeHTTP(w, r)
		return
	}
	ctx := r.Context()
	tmpl, err := p.templateOf(ctx, c.region, cs.form)
	if err != nil {
		p.forwardFailed(w, "reading a change set's template", err)
		return
	}
	refusal, err := p.preflight(ctx, c, cs.form, tmpl, cs.create)
	if err != nil {
		p.forwardFailed(w, "checking a change set", err)
		return
	}
	// Executed, a change set is gone, as on AWS.
	m := p.moto.in(c.region).CFN
	if _, err := m.DeleteChangeSet(ctx, &cloudformation.DeleteChangeSetInput{ChangeSetName: aws.String(cs.id)}); err != nil {
		p.log.Warn("deleting an executed change set", "change_set", cs.id, "err", err)
	}
	if refusal != "" {
		p.log.Info("change set fails", "stack", cs.stackName, "reason", refusal)
		p.failChangeSet(ctx, cs, tmpl, refusal)
		cfnAnswer(w, "ExecuteChangeSet")
		return
	}
	action := "UpdateStack"
	if cs.create {
		action = "CreateStack"
		// moto's review stack gives way to the stack moto creates.
		if _, err := m.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(cs.stackID)}); err != nil {
			p.forwardFailed(w, "replacing a change set's review stack", err)
			return
		}
	}
	stackForm := url.Values{}
	for k, v := range cs.form {
		switch {
		case k == "Action", k == "ChangeSetName", k == "ChangeSetType", k == "ClientToken", k == "Description",
			k == "IncludeNestedStacks", k == "ImportExistingResources", k == "OnStackFailure",
			strings.HasPrefix(k, "ResourcesToImport."):
			continue
		}
		stackForm[k] = v
	}
	stackForm.Set("Action", action)
	var before map[string]string
	if !cs.create {
		p.keepPrevious(ctx, c.region, cs.stackID, stackForm)
		before = p.physicalIDs(ctx, c.region, cs.stackID)
	}
	answer, err := p.roundTrip(r, []byte(stackForm.Encode()))
	if err != nil {
		p.forwardFailed(w, "executing a change set as "+action, err)
		return
	}
	if answer.status != http.StatusOK {
		answer.write(w)
		return
	}
	if cs.create {
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(answer.body); err == nil {
			// The CLI follows the stack by the id the change set gave it.
			p.cfn.mu.Lock()
			p.cfn.aliases[cs.stackID] = strings.TrimSpace(textOf(doc, "//StackId"))
			p.cfn.mu.Unlock()
		}
		p.afterCreate(ctx, answer.body, c.region, stackForm, tmpl)
	} else {
		p.cfn.given(cs.stackID, paramList(stackForm), true)
		p.afterUpdate(ctx, c.region, cs.stackID, tmpl, before)
	}
	cfnAnswer(w, "ExecuteChangeSet")
}

// afterUpdate carries out, for a stack moto has just updated, what moto
// leaves undone (the resources of types it does not implement), records
// its new template, ends an earlier failed update's status, and waits for
// the signals of resources the update made or replaced.
func (p *Proxy) afterUpdate(ctx context.Context, region, stackID string, tmplBody []byte, before map[string]string) {
	st, err := p.stackFor(ctx, region, stackID)
	if err != nil || st == nil {
		p.log.Warn("finding an updated stack", "stack", stackID, "err", err)
		return
	}
	t, ok := parseTemplate(tmplBody)
	if !ok {
		p.cfn.setStatus(st, "", "")
		return
	}
	if failed, err := p.applyUnimplemented(ctx, region, stackID, st.name, t, st.params); err != nil {
		p.log.Error("a resource moto does not implement failed to update", "stack", st.name, "resource", failed, "err", err)
	}
	customs, _ := t.customResources()
	p.cfn.mu.Lock()
	st.tmpl, st.customs = t, customs
	p.cfn.mu.Unlock()
	p.cfn.setStatus(st, "", "")
	after := p.physicalIDs(ctx, region, stackID)
	made := signalsToAwait(t, before, after)
	p.tagMadeInstances(ctx, st, t, made, after)
	p.tagGroupInstances(ctx, st)
	p.awaitSignals(st, made, true)
}

// tagMadeInstances gives instances an update made the tags CloudFormation
// puts on what it creates, which moto gives only at a stack's creation:
// an instance finds its logical id in them to signal.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-resource-tags.html
func (p *Proxy) tagMadeInstances(ctx context.Context, st *stackRecord, t *template, ids []string, physical map[string]string) {
	for _, id := range ids {
		if t.Resources[id].Type != "AWS::EC2::Instance" || physical[id] == "" {
			continue
		}
		_, err := p.moto.in(st.region).EC2.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: []string{physical[id]},
			Tags: []ec2types.Tag{
				{Key: aws.String("aws:cloudformation:logical-id"), Value: aws.String(id)},
				{Key: aws.String("aws:cloudformation:stack-name"), Value: aws.String(st.name)},
				{Key: aws.String("aws:cloudformation:stack-id"), Value: aws.String(st.id)},
			},
		})
		if err != nil {
			p.log.Warn("tagging an instance an update made", "stack", st.name, "resource", id, "err", err)
		}
	}
}

// failChangeSet shows a change set that fails while its resources are
// made: a new stack rolled back (ROLLBACK_COMPLETE), an existing one's
// update rolled back (UPDATE_ROLLBACK_COMPLETE), with the failed
// resource's event. The refusal is "<logical id>: <reason>".
func (p *Proxy) failChangeSet(ctx context.Context, cs *changeSet, tmpl []byte, refusal string) {
	logicalID, reason, _ := strings.Cut(refusal, ": ")
	st, err := p.stackFor(ctx, cs.region, cs.stackID)
	if err != nil || st == nil {
		p.log.Error("finding a change set's stack", "stack", cs.stackID, "err", err)
		return
	}
	resourceType := ""
	if t, ok := parseTemplate(tmpl); ok {
		resourceType = t.Resources[logicalID].Type
	}
	now := p.clock.Now()
	if cs.create {
		stackReason := fmt.Sprintf("The following resource(s) failed to create: [%s]. ", logicalID)
		p.cfn.setStatus(st, "ROLLBACK_COMPLETE", stackReason,
			stackEvent{at: now, logicalID: logicalID, resourceTy: resourceType, status: "CREATE_FAILED", reason: reason},
			stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "ROLLBACK_COMPLETE", reason: stackReason})
		return
	}
	stackReason := fmt.Sprintf("The following resource(s) failed to update: [%s]. ", logicalID)
	p.cfn.setStatus(st, "UPDATE_ROLLBACK_COMPLETE", stackReason,
		stackEvent{at: now, logicalID: logicalID, resourceTy: resourceType, status: "UPDATE_FAILED", reason: reason},
		stackEvent{at: now, logicalID: st.name, physicalID: st.id, resourceTy: "AWS::CloudFormation::Stack", status: "UPDATE_ROLLBACK_COMPLETE", reason: stackReason})
}

// cfnAnswer answers an action whose result is empty.
func cfnAnswer(w http.ResponseWriter, action string) {
	out := fmt.Sprintf(`<%[1]sResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">`+
		`<%[1]sResult/><ResponseMetadata><RequestId>%[2]s</RequestId></ResponseMetadata></%[1]sResponse>`, action, requestID())
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(out))
}
