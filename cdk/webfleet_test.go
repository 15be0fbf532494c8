package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/frontend"
	"github.com/surgeml/surge/internal/metrics"
	"github.com/surgeml/surge/internal/testenv"
)

// synthWebGroup is the stack with -c webMax=4.
func synthWebGroup(t *testing.T) *synthesis {
	return synthWith(t, map[string]any{"webMax": "4"})
}

// Issue 24, item 3: with webMax=4 the web tier is an Auto Scaling group
// of 2 to 4 instances, named <prefix>-web, across the two public subnets,
// from a launch template (IMDSv2 only, encrypted root, the web tier's
// boot with its own reply queue, a keep-alive above the balancer's idle
// timeout and the group's metrics), behind an internet-facing Application
// Load Balancer: HTTP on port 80 forwarded to port 8000, health checks of
// /readyz, an idle timeout above the longest upload hold and a
// deregistration delay above the longest request; target tracking on the
// web tier's open uploads per instance; no single web instance, Elastic IP
// or ALBRequestCountPerTarget. The template passes cfn-lint.
func TestWebGroup(t *testing.T) {
	s := synthWebGroup(t)
	tmpl, doc := *s.template, s.json
	for typ, n := range map[string]float64{
		"AWS::AutoScaling::AutoScalingGroup":               1,
		"AWS::AutoScaling::ScalingPolicy":                  1,
		"AWS::ElasticLoadBalancingV2::LoadBalancer":        1,
		"AWS::ElasticLoadBalancingV2::Listener":            1,
		"AWS::ElasticLoadBalancingV2::TargetGroup":         1,
		"AWS::EC2::LaunchTemplate":                         2, // the workers' and the web group's
		"AWS::EC2::Instance":                               0,
		"AWS::EC2::EIP":                                    0,
		"AWS::EC2::SecurityGroup":                          3, // workers, web instances, load balancer
		"AWS::ElasticLoadBalancingV2::ListenerRule":        0,
		"AWS::ElasticLoadBalancing::LoadBalancer":          0, // no Classic Load Balancer
		"AWS::ApplicationAutoScaling::ScalingPolicy":       0,
		"AWS::AutoScaling::LaunchConfiguration":            0,
		"AWS::AutoScaling::ScheduledAction":                0,
		"AWS::CloudFormation::CustomResource":              0,
		"AWS::ElasticLoadBalancingV2::TrustStore":          0,
		"AWS::ElasticLoadBalancingV2::ListenerCertificate": 0,
	} {
		tmpl.ResourceCountIs(jsii.String(typ), jsii.Number(n))
	}
	group := onlyID(t, doc, "AWS::AutoScaling::AutoScalingGroup")
	subnets := []any{}
	for _, id := range slices.Sorted(maps.Keys(resources(doc, "AWS::EC2::Subnet"))) {
		subnets = append(subnets, map[string]any{"Ref": id})
	}
	if len(subnets) != 2 {
		t.Fatalf("%d subnets", len(subnets))
	}
	tmpl.HasResourceProperties(jsii.String("AWS::AutoScaling::AutoScalingGroup"), map[string]any{
		"AutoScalingGroupName": "surge-web",
		"MinSize":              "2",
		"MaxSize":              "4",
		"VPCZoneIdentifier":    assertions.Match_ArrayWith(&subnets),
		"TargetGroupARNs":      []any{map[string]any{"Ref": onlyID(t, doc, "AWS::ElasticLoadBalancingV2::TargetGroup")}},
		"LaunchTemplate": map[string]any{
			"LaunchTemplateId": map[string]any{"Ref": resourceID(t, doc, "AWS::EC2::LaunchTemplate", "WebTemplate")},
			"Version":          assertions.Match_AnyValue(),
		},
		"Tags": []any{map[string]any{"Key": "Name", "Value": "web-instance", "PropagateAtLaunch": true}},
		// EC2 health checks: the balancer's would replace every instance
		// when a dependency is down.
		"HealthCheckType": assertions.Match_Absent(),
	})
	res := doc["Resources"].(map[string]any)[group].(map[string]any)
	policy, _ := json.Marshal(res["CreationPolicy"])
	if string(policy) != `{"ResourceSignal":{"Count":2,"Timeout":"PT15M"}}` {
		t.Errorf("the web group's creation policy: %s", policy)
	}
	update, _ := json.Marshal(res["UpdatePolicy"])
	for _, want := range []string{`"MaxBatchSize":1`, `"MinInstancesInService":1`, `"WaitOnResourceSignals":true`} {
		if !strings.Contains(string(update), want) {
			t.Errorf("the web group's update policy lacks %s: %s", want, update)
		}
	}

	// The launch template and the boot it runs.
	tmpl.HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateName": assertions.Match_Absent(),
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{
			"InstanceType":        "t3.small",
			"MetadataOptions":     map[string]any{"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
			"CreditSpecification": map[string]any{"CpuCredits": "standard"},
			"BlockDeviceMappings": []any{map[string]any{
				"DeviceName": "/dev/xvda",
				"Ebs":        map[string]any{"Encrypted": true, "VolumeSize": 8, "VolumeType": "gp3"},
			}},
			"SecurityGroupIds": []any{map[string]any{"Fn::GetAtt": []any{resourceID(t, doc, "AWS::EC2::SecurityGroup", "WebSecurityGroup"), "GroupId"}}},
		}),
	})
	web := doc["Resources"].(map[string]any)[resourceID(t, doc, "AWS::EC2::LaunchTemplate", "WebTemplate")].(map[string]any)
	b, _ := json.Marshal(web["Properties"].(map[string]any)["LaunchTemplateData"].(map[string]any)["UserData"])
	script := string(b)
	for _, want := range []string{
		"/opt/surge/bin/webtier 0755", "SURGE_INSTANCE_ID=imds\\n", "SURGE_KEEP_ALIVE=" + webKeepAlive.String() + "\\n",
		"SURGE_FLEET=surge-web\\n", "SURGE_PORT=8000\\n", "SURGE_EMF=tcp://127.0.0.1:25888", "SURGE_MODEL_NAME=mobilenetv2-12-int8\\n",
		"enable --now surge-webtier.service surge-ready.service", "cloudformation signal-resource", "/readyz", "Restart=always",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("the web group's user data lacks %q", want)
		}
	}

	// The load balancer, its listener and its target group.
	tmpl.HasResourceProperties(jsii.String("AWS::ElasticLoadBalancingV2::LoadBalancer"), map[string]any{
		"Type": "application", "Scheme": "internet-facing",
		"Subnets": assertions.Match_ArrayWith(&subnets),
		"LoadBalancerAttributes": assertions.Match_ArrayWith(&[]any{
			map[string]any{"Key": "idle_timeout.timeout_seconds", "Value": "330"},
			map[string]any{"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"},
		}),
	})
	tmpl.HasResourceProperties(jsii.String("AWS::ElasticLoadBalancingV2::Listener"), map[string]any{
		"Port": 80, "Protocol": "HTTP",
		"DefaultActions": []any{map[string]any{"Type": "forward", "TargetGroupArn": map[string]any{"Ref": onlyID(t, doc, "AWS::ElasticLoadBalancingV2::TargetGroup")}}},
	})
	tmpl.HasResourceProperties(jsii.String("AWS::ElasticLoadBalancingV2::TargetGroup"), map[string]any{
		"Port": 8000, "Protocol": "HTTP", "TargetType": "instance",
		"HealthCheckPath": "/readyz", "HealthCheckPort": "8000", "HealthCheckProtocol": "HTTP",
		"HealthCheckIntervalSeconds": 10, "HealthCheckTimeoutSeconds": 5, "HealthyThresholdCount": 2, "UnhealthyThresholdCount": 3,
		"Matcher": map[string]any{"HttpCode": "200"},
		"TargetGroupAttributes": assertions.Match_ArrayWith(&[]any{
			map[string]any{"Key": "deregistration_delay.timeout_seconds", "Value": "450"},
		}),
	})

	// Target tracking on the open uploads per instance, the web tier's own
	// metric of this group.
	tmpl.HasResourceProperties(jsii.String("AWS::AutoScaling::ScalingPolicy"), map[string]any{
		"AutoScalingGroupName": map[string]any{"Ref": group},
		"PolicyType":           "TargetTrackingScaling",
		"TargetTrackingConfiguration": map[string]any{
			"CustomizedMetricSpecification": map[string]any{
				"Namespace": metrics.EMFNamespace, "MetricName": metrics.EMFOpenUploads, "Statistic": "Average",
				"Dimensions": []any{map[string]any{"Name": "Fleet", "Value": "surge-web"}},
			},
			"TargetValue": openUploadsTarget,
		},
	})
	all, _ := json.Marshal(doc)
	if strings.Contains(string(all), "ALBRequestCountPerTarget") || strings.Contains(string(all), "PredefinedMetricSpecification") {
		t.Error("the web group scales on a predefined metric (ALBRequestCountPerTarget lags behind held uploads)")
	}

	// Clients reach the balancer on port 80 from allowedCidr only; the
	// instances take port 8000 from the balancer only.
	alb := resourceID(t, doc, "AWS::EC2::SecurityGroup", "WebLoadBalancerSecurityGroup")
	webSG := resourceID(t, doc, "AWS::EC2::SecurityGroup", "WebSecurityGroup")
	tmpl.HasResourceProperties(jsii.String("AWS::EC2::SecurityGroup"), map[string]any{
		"GroupDescription":     assertions.Match_StringLikeRegexp(jsii.String("load balancer")),
		"SecurityGroupIngress": []any{map[string]any{"CidrIp": "203.0.113.7/32", "FromPort": 80, "ToPort": 80, "IpProtocol": "tcp", "Description": "Surge clients"}},
	})
	ingress := resources(doc, "AWS::EC2::SecurityGroupIngress")
	if len(ingress) != 1 {
		t.Fatalf("%d ingress rules of their own, want the web instances' from the balancer", len(ingress))
	}
	for _, r := range ingress {
		got, _ := json.Marshal(r["Properties"])
		want := `{"Description":"Surge load balancer","FromPort":8000,"GroupId":{"Fn::GetAtt":["` + webSG + `","GroupId"]},"IpProtocol":"tcp","SourceSecurityGroupId":{"Fn::GetAtt":["` + alb + `","GroupId"]},"ToPort":8000}`
		if string(got) != want {
			t.Errorf("web ingress %s, want %s", got, want)
		}
	}
	if props := doc["Resources"].(map[string]any)[webSG].(map[string]any)["Properties"].(map[string]any); props["SecurityGroupIngress"] != nil {
		t.Errorf("the web instances take traffic from elsewhere than the balancer: %v", props["SecurityGroupIngress"])
	}

	// The outputs: WebUrl names the balancer.
	url, _ := json.Marshal(doc["Outputs"].(map[string]any)["WebUrl"])
	if !strings.Contains(string(url), `"Fn::GetAtt":["`+onlyID(t, doc, "AWS::ElasticLoadBalancingV2::LoadBalancer")+`","DNSName"]`) {
		t.Errorf("WebUrl does not name the load balancer: %s", url)
	}
	tmpl.HasOutput(jsii.String("WebGroupName"), map[string]any{"Value": map[string]any{"Ref": group}})
	if _, ok := doc["Outputs"].(map[string]any)["WebInstanceId"]; ok {
		t.Error("WebInstanceId with a group of web instances")
	}
	// The stack's hook ends the fleet while the web group, which uses the
	// same network, is still there.
	for _, h := range resources(doc, "Custom::SurgeStackHooks") {
		if !slices.Contains(strings_(h["DependsOn"]), group) {
			t.Errorf("the stack's hook does not depend on the web group: %v", h["DependsOn"])
		}
	}

	if out, err := exec.Command("cfn-lint", "--ignore-checks", "W3005", "--", filepath.Join(s.outdir, s.cfg.StackName+".template.json")).CombinedOutput(); err != nil {
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}

	// webMin: more instances always running (make emulate WEB=3), each
	// signalling; a rolling update keeps all but one in service.
	three := synthWith(t, map[string]any{"webMax": "3", "webMin": "3"})
	(*three.template).HasResourceProperties(jsii.String("AWS::AutoScaling::AutoScalingGroup"), map[string]any{"MinSize": "3", "MaxSize": "3"})
	res = three.json["Resources"].(map[string]any)[onlyID(t, three.json, "AWS::AutoScaling::AutoScalingGroup")].(map[string]any)
	policy, _ = json.Marshal(res["CreationPolicy"])
	update, _ = json.Marshal(res["UpdatePolicy"])
	if !strings.Contains(string(policy), `"Count":3`) || !strings.Contains(string(update), `"MinInstancesInService":2`) {
		t.Errorf("webMin=3: creation policy %s, update policy %s", policy, update)
	}
}

// The timings fit the web tier's own: the balancer keeps a connection
// idle past the longest hold of an upload (-result-timeout), the web tier
// keeps it longer still (-keep-alive, whose default is shorter), and a
// leaving instance has the longest request's time, its body's 2 minutes
// and its hold, to answer what it holds.
func TestWebGroupTimingsFitTheWebTier(t *testing.T) {
	fs := flag.NewFlagSet("webtier", flag.ContinueOnError)
	frontend.Flags(fs)
	duration := func(name string) time.Duration {
		d, err := time.ParseDuration(fs.Lookup(name).DefValue)
		if err != nil {
			t.Fatalf("-%s: %v", name, err)
		}
		return d
	}
	hold, keepAlive := duration("result-timeout"), duration("keep-alive")
	const body = 2 * time.Minute // the protocol's: a body arrives whole within 2 minutes
	if albIdleTimeout <= hold {
		t.Errorf("the balancer's idle timeout %v cuts uploads held for %v", albIdleTimeout, hold)
	}
	// The group's boot sets it (TestWebGroup reads SURGE_KEEP_ALIVE in
	// the user data): the web tier's default is shorter.
	if webKeepAlive <= albIdleTimeout {
		t.Errorf("keep-alive %v (the web tier's default %v) is not above the balancer's idle timeout %v", webKeepAlive, keepAlive, albIdleTimeout)
	}
	if webDeregistrationDelay < body+hold || webDeregistrationDelay > time.Hour {
		t.Errorf("deregistration delay %v: want at least a request's life, %v, and at most an hour", webDeregistrationDelay, body+hold)
	}
	if albIdleTimeout > 4000*time.Second {
		t.Errorf("idle timeout %v above the 4000 s ELB allows", albIdleTimeout)
	}
}

// Without webMax, or with webMax=1, the stack is the one web-instance's,
// exactly: the same template, with nothing of the group's (no reply
// queue grants, no sweeper, no instance id for the web tier).
func TestWithoutWebMaxNothingChanges(t *testing.T) {
	_, doc, _ := synth(t)
	// The stack is made from the configuration alone: webMax=1 configures
	// the same, so it makes the same template.
	modelDir, ortLib, _ := runtimeFiles(t)
	ctx := map[string]any{"modelDir": modelDir, "ortLib": ortLib}
	without, err := configFromContext(contextNode(ctx), testenv.Root(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx["webMax"] = "1"
	one, err := configFromContext(contextNode(ctx), testenv.Root(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(without, one) {
		t.Errorf("webMax=1 configures %+v, without it %+v", one, without)
	}
	all, _ := json.Marshal(doc)
	for _, absent := range []string{"AWS::AutoScaling", "AWS::ElasticLoadBalancingV2", "surge-resp-*", "SURGE_RESPONSE_QUEUE_URL", "SURGE_INSTANCE_ID", "SURGE_KEEP_ALIVE", `"surge-web"`, "sqs:CreateQueue", "sqs:ListQueues"} {
		if strings.Contains(string(all), absent) {
			t.Errorf("the single web instance's template holds %q", absent)
		}
	}
}

// The grants of the web group's stack: every policy's statements checked
// as the single instance's are; the reply queues, <prefix>-resp-*, are
// created, read and deleted only by the web role and the scaler, and
// only sent to by the workers; the scaler's sweep may list queues,
// read, tag, drain and delete reply queues, send to the shared response
// queue, and never delete it; the web tier marks pending uploads in the
// table.
func TestWebGroupPolicies(t *testing.T) {
	s := synthWebGroup(t)
	doc := s.json
	checkStatements(t, doc)
	pattern := map[string]any{"Fn::Join": []any{"", []any{"arn:", map[string]any{"Ref": "AWS::Partition"}, ":sqs:", map[string]any{"Ref": "AWS::Region"}, ":",
		map[string]any{"Ref": "AWS::AccountId"}, ":surge-resp-*"}}}
	shared := map[string]any{"Fn::GetAtt": []any{resourceID(t, doc, "AWS::SQS::Queue", "ResponseQueue"), "Arn"}}
	type grant struct {
		sid, effect string
		actions     []string
	}
	roleNames := map[string]string{}
	for _, name := range []string{"WebRole", "WorkerRole", "ScalerRole", "StackHooksRole"} {
		roleNames[roleID(t, doc, name)] = name
	}
	onPattern, onShared := map[string][]grant{}, map[string][]grant{}
	for _, p := range resources(doc, "AWS::IAM::Policy") {
		props := p["Properties"].(map[string]any)
		var roles []string
		for _, r := range asSlice(props["Roles"]) {
			roles = append(roles, roleNames[fmt.Sprint(r.(map[string]any)["Ref"])])
		}
		for _, st := range props["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			st := st.(map[string]any)
			g := grant{sid: fmt.Sprint(st["Sid"]), effect: fmt.Sprint(st["Effect"]), actions: strings_(st["Action"])}
			for _, r := range asSlice(st["Resource"]) {
				for _, role := range roles {
					switch {
					case reflect.DeepEqual(r, pattern):
						onPattern[role] = append(onPattern[role], g)
					case reflect.DeepEqual(r, shared):
						onShared[role] = append(onShared[role], g)
					}
				}
			}
		}
	}
	wantPattern := map[string][]grant{
		"WebRole":    {{"ReplyQueues", "Allow", []string{"sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:TagQueue"}}},
		"WorkerRole": {{"AnswerReplyQueues", "Allow", []string{"sqs:SendMessage", "sqs:GetQueueUrl"}}},
		"ScalerRole": {{"SweepReplyQueues", "Allow", []string{"sqs:ListQueueTags", "sqs:TagQueue", "sqs:UntagQueue", "sqs:DeleteQueue",
			"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}}},
	}
	if !reflect.DeepEqual(onPattern, wantPattern) {
		t.Errorf("grants on the reply queues by role:\n%+v\nwant\n%+v", onPattern, wantPattern)
	}
	if got := onShared["ScalerRole"]; !slices.ContainsFunc(got, func(g grant) bool {
		return g.sid == "KeepSharedResponseQueue" && g.effect == "Deny" && slices.Equal(g.actions, []string{"sqs:DeleteQueue"})
	}) || !slices.ContainsFunc(got, func(g grant) bool {
		return g.sid == "PassOnAnswers" && g.effect == "Allow" && slices.Equal(g.actions, []string{"sqs:SendMessage"})
	}) {
		t.Errorf("the scaler's grants on the shared response queue: %+v", got)
	}
	(*s.template).HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
		"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{map[string]any{
			"Sid": "FindReplyQueues", "Action": "sqs:ListQueues", "Effect": "Allow", "Resource": "*",
		}})},
	})
	(*s.template).HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
		"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{map[string]any{
			"Sid": "MarkPending", "Action": "dynamodb:PutItem", "Effect": "Allow",
			"Resource": map[string]any{"Fn::GetAtt": []any{onlyID(t, doc, "AWS::DynamoDB::Table"), "Arn"}},
		}})},
		"Roles": []any{map[string]any{"Ref": roleID(t, doc, "WebRole")}},
	})
	// The scaler sweeps into the shared response queue.
	(*s.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler": "scaler",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{
			"SURGE_RESPONSE_QUEUE_URL": map[string]any{"Ref": resourceID(t, doc, "AWS::SQS::Queue", "ResponseQueue")},
		})},
	})
}

// The dashboard shows the web tier's metrics of the web group, and what
// its target tracking scales on against the target.
func TestWebGroupDashboard(t *testing.T) {
	s := synthWebGroup(t)
	metrics, _ := dashboardMetrics(t, dashboardBody(t, s.json))
	fleets := map[string]string{}
	for _, m := range metrics {
		fleets[m.name] = m.value
	}
	for name, fleet := range map[string]string{"Uploads": "surge-web", "UploadLatency": "surge-web", "OpenUploads": "surge-web", "Recognised": "surge", "Backlog": "surge"} {
		if fleets[name] != fleet {
			t.Errorf("dashboard metric %s of fleet %q, want %q", name, fleets[name], fleet)
		}
	}
	body, _ := json.Marshal(dashboardBody(t, s.json))
	if !strings.Contains(string(body), `"value":`+strconv.Itoa(openUploadsTarget)) {
		t.Errorf("the dashboard does not show the scaling target: %s", body)
	}
}
