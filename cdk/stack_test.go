package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/testenv"
)

// synthesized is the stack built once for all tests (synthesis takes
// seconds): the template, and the cloud assembly directory for the
// deployment test.
var synthesized struct {
	template *assertions.Template
	outdir   string
	json     map[string]any
}

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	if synthesized.outdir != "" {
		os.RemoveAll(synthesized.outdir)
	}
	os.Exit(code)
}

func synth(t *testing.T) (*assertions.Template, map[string]any, string) {
	t.Helper()
	if synthesized.template != nil {
		return synthesized.template, synthesized.json, synthesized.outdir
	}
	repo := testenv.Root(t)
	outdir, err := os.MkdirTemp("", "surge-cdk-")
	if err != nil {
		t.Fatal(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir), Context: &map[string]interface{}{
		"allowedCidr": "203.0.113.7/32",
		"maxWorkers":  "15",
		"modelDir":    testenv.Path(t, "models", "mobilenetv2-12-int8"),
		"ortLib":      testenv.RuntimeLib(t),
	}})
	cfg, err := configFromContext(app.Node(), repo)
	if err != nil {
		t.Fatal(err)
	}
	stack := NewSurgeStack(app, "Surge", cfg, stackProps(cfg))
	app.Synth(nil)
	tmpl := assertions.Template_FromStack(stack, nil)
	var doc map[string]any
	b, _ := json.Marshal(tmpl.ToJSON())
	json.Unmarshal(b, &doc)
	synthesized.template, synthesized.json, synthesized.outdir = &tmpl, doc, outdir
	return &tmpl, doc, outdir
}

func resources(doc map[string]any, typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range doc["Resources"].(map[string]any) {
		if res := r.(map[string]any); res["Type"] == typ {
			out[id] = res
		}
	}
	return out
}

func TestResourceCounts(t *testing.T) {
	tmpl, _, _ := synth(t)
	for typ, n := range map[string]float64{
		"AWS::SQS::Queue":                     3, // requests, their dead letters, responses
		"AWS::S3::Bucket":                     2,
		"AWS::IAM::Role":                      3, // one per tier
		"AWS::EC2::Instance":                  1, // the web tier; workers come from the template
		"AWS::Lambda::Function":               1,
		"AWS::Events::Rule":                   1,
		"AWS::Logs::LogGroup":                 1,
		"AWS::EC2::VPC":                       1,
		"AWS::EC2::NatGateway":                0,
		"AWS::EC2::SecurityGroup":             2,
		"AWS::CloudFormation::CustomResource": 0,
	} {
		(*tmpl).ResourceCountIs(jsii.String(typ), jsii.Number(n))
	}
}

func TestQueuesAndBuckets(t *testing.T) {
	tmpl, _, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{
		"QueueName":            "surge-req-queue",
		"MaximumMessageSize":   1024,
		"VisibilityTimeout":    requestVisibility,
		"SqsManagedSseEnabled": true,
		"RedrivePolicy": map[string]any{
			"deadLetterTargetArn": assertions.Match_AnyValue(),
			"maxReceiveCount":     5,
		},
	})
	for _, q := range []string{"surge-resp-queue", "surge-req-dlq"} {
		(*tmpl).HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{"QueueName": q, "SqsManagedSseEnabled": true})
	}
	for _, b := range []string{"surge-in-bucket", "surge-out-bucket"} {
		(*tmpl).HasResourceProperties(jsii.String("AWS::S3::Bucket"), map[string]any{
			"BucketName": b,
			"PublicAccessBlockConfiguration": map[string]any{
				"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
			},
			"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{
				map[string]any{"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}},
			}},
		})
	}
	// TLS only, for both buckets and all three queues.
	deny := map[string]any{"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
		assertions.Match_ObjectLike(&map[string]any{
			"Effect":    "Deny",
			"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
		}),
	})}}
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::S3::BucketPolicy"), deny, jsii.Number(2))
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::SQS::QueuePolicy"), deny, jsii.Number(3))
}

func TestWorkerLaunchTemplate(t *testing.T) {
	tmpl, doc, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateName": "surge-worker",
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{
			"ImageId":                           map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("SsmParameterValue.*al2023.*x8664"))},
			"InstanceType":                      "t3.small",
			"InstanceInitiatedShutdownBehavior": "terminate",
			"MetadataOptions":                   assertions.Match_ObjectLike(&map[string]any{"HttpTokens": "required", "InstanceMetadataTags": "enabled"}),
			"BlockDeviceMappings": []any{map[string]any{
				"DeviceName": "/dev/xvda",
				"Ebs":        map[string]any{"Encrypted": true, "VolumeSize": 8, "VolumeType": "gp3"},
			}},
		}),
	})
	// The user data installs the worker, the runtime and the model from
	// the assets and runs the worker under systemd.
	var script string
	for _, lt := range resources(doc, "AWS::EC2::LaunchTemplate") {
		data := lt["Properties"].(map[string]any)["LaunchTemplateData"].(map[string]any)
		if data["InstanceInitiatedShutdownBehavior"] == "terminate" {
			b, _ := json.Marshal(data["UserData"])
			script = string(b)
		}
	}
	for _, want := range []string{
		"/opt/surge/bin/worker", "/opt/surge/lib/libonnxruntime.so.1", "/opt/surge/models/mobilenetv2-12-int8/model.onnx",
		"/opt/surge/models/mobilenetv2-12-int8/labels.txt", "SURGE_BACKEND=aws", "SURGE_PREFIX=surge",
		"SURGE_IDLE_SHUTDOWN=60s", "systemctl enable --now surge-worker.service", "aws s3 cp",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("worker user data lacks %q", want)
		}
	}
}

func TestWebTier(t *testing.T) {
	tmpl, _, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::Instance"), map[string]any{
		"Tags": assertions.Match_ArrayWith(&[]any{map[string]any{"Key": "Name", "Value": "web-instance"}}),
		"BlockDeviceMappings": []any{map[string]any{
			"DeviceName": "/dev/xvda",
			"Ebs":        map[string]any{"Encrypted": true, "VolumeSize": 8, "VolumeType": "gp3"},
		}},
	})
	// IMDSv2 on the web tier too (CDK puts it in a launch template).
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateData": map[string]any{"MetadataOptions": map[string]any{"HttpTokens": "required"}},
	})
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::SecurityGroup"), map[string]any{
		"SecurityGroupIngress": []any{map[string]any{"CidrIp": "203.0.113.7/32", "FromPort": 8000, "ToPort": 8000, "IpProtocol": "tcp"}},
	})
	for _, o := range []string{"WebUrl", "RequestQueueName", "ResponseQueueName", "InputBucketName", "OutputBucketName"} {
		(*tmpl).HasOutput(jsii.String(o), map[string]any{})
	}
}

func TestScaler(t *testing.T) {
	tmpl, _, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Runtime":                      "provided.al2023",
		"Architectures":                []any{"arm64"},
		"Handler":                      "bootstrap",
		"Timeout":                      60,
		"ReservedConcurrentExecutions": 1,
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{
			"SURGE_LAUNCH_TEMPLATE": "surge-worker", "SURGE_FLEET": "surge", "SURGE_MAX_WORKERS": "15",
			"SURGE_REQUEST_QUEUE_URL": assertions.Match_AnyValue(), "SURGE_SUBNETS": assertions.Match_AnyValue(),
		})},
	})
	(*tmpl).HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{"ScheduleExpression": "rate(1 minute)", "State": "ENABLED"})
	(*tmpl).HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 14})
}

// actionsWithoutResources lists the actions Surge uses that have no
// resource-level permissions, so only "*" can name their resource.
func actionsWithoutResources() []string {
	return []string{"ec2:DescribeInstances"}
}

// Every statement of every policy: no wildcard in any action, "*" as a
// resource only for actions that cannot name one, EC2 launches and
// terminations bound to the fleet tag, and roles passed only to EC2.
func TestLeastPrivilege(t *testing.T) {
	_, doc, _ := synth(t)
	statements := 0
	check := func(where string, policy map[string]any) {
		for _, s := range policy["Statement"].([]any) {
			st := s.(map[string]any)
			statements++
			if st["Effect"] != "Allow" {
				continue
			}
			actions := strings_(st["Action"])
			for _, a := range actions {
				if strings.Contains(a, "*") {
					t.Errorf("%s: wildcard action %q", where, a)
				}
			}
			for _, r := range asSlice(st["Resource"]) {
				if r == "*" {
					for _, a := range actions {
						if !slices.Contains(actionsWithoutResources(), a) {
							t.Errorf("%s: %s on every resource, but it has resource-level permissions", where, a)
						}
					}
				}
			}
			cond, _ := json.Marshal(st["Condition"])
			for _, a := range actions {
				switch {
				case a == "ec2:TerminateInstances" && !strings.Contains(string(cond), `"aws:ResourceTag/surge:fleet":"surge"`):
					t.Errorf("%s: TerminateInstances not bound to the fleet tag", where)
				case a == "iam:PassRole" && !strings.Contains(string(cond), `"iam:PassedToService":"ec2.amazonaws.com"`):
					t.Errorf("%s: PassRole not bound to EC2", where)
				}
			}
		}
	}
	for id, p := range resources(doc, "AWS::IAM::Policy") {
		check(id, p["Properties"].(map[string]any)["PolicyDocument"].(map[string]any))
	}
	for id, r := range resources(doc, "AWS::IAM::Role") {
		props := r["Properties"].(map[string]any)
		if props["ManagedPolicyArns"] != nil {
			t.Errorf("%s: managed policies %v (they grant more than Surge needs)", id, props["ManagedPolicyArns"])
		}
		for _, p := range asSlice(props["Policies"]) {
			check(id, p.(map[string]any)["PolicyDocument"].(map[string]any))
		}
	}
	// One launch is allowed only with the fleet tag on the new instance.
	launchTagged := false
	for _, p := range resources(doc, "AWS::IAM::Policy") {
		b, _ := json.Marshal(p)
		launchTagged = launchTagged || strings.Contains(string(b), `"aws:RequestTag/surge:fleet":"surge"`)
	}
	if !launchTagged {
		t.Error("RunInstances is not bound to the fleet tag")
	}
	// PassRole appears once, for the worker role only.
	passes := 0
	for _, p := range resources(doc, "AWS::IAM::Policy") {
		b, _ := json.Marshal(p)
		passes += strings.Count(string(b), `"iam:PassRole"`)
		if strings.Contains(string(b), `"iam:PassRole"`) && !strings.Contains(string(b), `"WorkerRole`) {
			t.Error("PassRole on something other than the worker role")
		}
	}
	if passes != 1 || statements < 15 {
		t.Errorf("%d PassRole statements, %d statements checked", passes, statements)
	}
	t.Logf("%d policy statements checked", statements)
}

func strings_(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	var out []string
	for _, a := range asSlice(v) {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

func asSlice(v any) []any {
	if s, ok := v.([]any); ok {
		return s
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func TestArmInstanceType(t *testing.T) {
	for typ, arm := range map[string]bool{
		"t3.small": false, "t3a.medium": false, "m7i.large": false, "c5n.xlarge": false,
		"g4dn.xlarge": false, "p4d.24xlarge": false, "hpc6a.48xlarge": false, "inf1.xlarge": false,
		"t4g.small": true, "m6g.large": true, "m7gd.xlarge": true, "c6gn.large": true,
		"im4gn.large": true, "g5g.xlarge": true, "hpc7g.4xlarge": true, "a1.medium": true,
	} {
		if got := armInstanceType(typ); got != arm {
			t.Errorf("armInstanceType(%q) = %v, want %v", typ, got, arm)
		}
	}
}

func TestContextValidation(t *testing.T) {
	repo := testenv.Root(t)
	for name, ctx := range map[string]map[string]any{
		"bad cidr":             {"allowedCidr": "everyone"},
		"bad prefix":           {"prefix": "Surge_Prod"},
		"vpc without subnets":  {"vpcId": "vpc-123"},
		"url without digest":   {"modelUrl": "https://example.com/m.tar.gz"},
		"missing model folder": {"modelDir": filepath.Join(t.TempDir(), "nope")},
		"bad maximum":          {"maxWorkers": "0"},
		"graviton worker":      {"workerInstanceType": "t4g.small"},
		"graviton web tier":    {"webInstanceType": "m7gd.large"},
	} {
		ctx["ortLib"] = testenv.RuntimeLib(t)
		app := awscdk.NewApp(&awscdk.AppProps{Context: &ctx})
		if _, err := configFromContext(app.Node(), repo); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
