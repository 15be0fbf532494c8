package main

import (
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/internal/testenv"
)

// synthesized are the stacks built for the tests, by context (synthesis
// takes seconds): the template, and the cloud assembly directory for the
// deployment tests.
var synthesized = map[string]*synthesis{}

type synthesis struct {
	template    *assertions.Template
	annotations assertions.Annotations
	outdir      string
	json        map[string]any
	cfg         Config
}

func TestMain(m *testing.M) {
	code := m.Run()
	jsii.Close()
	for _, s := range synthesized {
		os.RemoveAll(s.outdir)
	}
	os.Exit(code)
}

// synth is the stack the tests look at: the defaults, with a fleet cap of
// 15 and port 8000 open to one address.
func synth(t *testing.T) (*assertions.Template, map[string]any, string) {
	s := synthWith(t, nil)
	return s.template, s.json, s.outdir
}

// synthWith synthesizes the stack with context on top of synth's; a nil
// value removes synth's key.
func synthWith(t *testing.T, extra map[string]any) *synthesis {
	t.Helper()
	testenv.SkipShort(t, "the CDK's jsii runtime (node)")
	ctx := map[string]any{
		"allowedCidr": "203.0.113.7/32",
		"maxWorkers":  "15",
		"modelDir":    testenv.Path(t, "models", "mobilenetv2-12-int8"),
	}
	maps.Copy(ctx, extra)
	maps.DeleteFunc(ctx, func(_ string, v any) bool { return v == nil })
	key := fmt.Sprint(ctx)
	if s, ok := synthesized[key]; ok {
		return s
	}
	outdir, err := os.MkdirTemp("", "surge-cdk-")
	if err != nil {
		t.Fatal(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir), Context: &ctx})
	cfg, err := configFromContext(app.Node(), testenv.Root(t))
	if err != nil {
		t.Fatal(err)
	}
	stack := NewSurgeStack(app, cfg, stackProps(cfg))
	app.Synth(nil)
	tmpl := assertions.Template_FromStack(stack, nil)
	var doc map[string]any
	b, _ := json.Marshal(tmpl.ToJSON())
	json.Unmarshal(b, &doc)
	s := &synthesis{template: &tmpl, annotations: assertions.Annotations_FromStack(stack), outdir: outdir, json: doc, cfg: cfg}
	synthesized[key] = s
	return s
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
		"AWS::SQS::Queue":      3, // requests, their dead letters, responses
		"AWS::S3::Bucket":      2,
		"AWS::DynamoDB::Table": 1, // the results
		// A global table would be replication nobody asked for, and moto
		// cannot create one.
		"AWS::DynamoDB::GlobalTable": 0,
		"AWS::IAM::Role":             4, // one per tier, and the stack's hooks
		"AWS::EC2::Instance":         1, // the web tier; workers come from the template
		"AWS::EC2::LaunchTemplate":   1, // the workers'; the web tier has none, so no fixed name
		"AWS::Lambda::Function":      2, // the scaler and the stack's hooks
		"AWS::Events::Rule":          1,
		"AWS::Logs::LogGroup":        4, // the instances', their metrics', the scaler's, the hooks'
		"AWS::CloudWatch::Dashboard": 1,
		"AWS::CloudWatch::Alarm":     1, // dead letters
		// No topic unless alarmEmail asks for one.
		"AWS::SNS::Topic":         0,
		"AWS::SNS::Subscription":  0,
		"AWS::EC2::VPC":           1,
		"AWS::EC2::NatGateway":    0,
		"AWS::EC2::SecurityGroup": 2,
		"Custom::SurgeStackHooks": 1,
		// No CDK-provided custom resources: they are Node.js Lambdas, which
		// the emulator cannot run.
		"AWS::CloudFormation::CustomResource": 0,
		"Custom::VpcRestrictDefaultSG":        0,
		"Custom::S3AutoDeleteObjects":         0,
	} {
		(*tmpl).ResourceCountIs(jsii.String(typ), jsii.Number(n))
	}
}

func TestQueuesAndBuckets(t *testing.T) {
	tmpl, doc, _ := synth(t)
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
	// Bucket names are global: CloudFormation makes unique ones unless the
	// course's exact names are asked for. Destroy deletes them (the hooks
	// empty them first) unless the data is to be kept.
	for id, b := range resources(doc, "AWS::S3::Bucket") {
		props := b["Properties"].(map[string]any)
		if props["BucketName"] != nil {
			t.Errorf("%s has the fixed name %v", id, props["BucketName"])
		}
		if b["DeletionPolicy"] != "Delete" {
			t.Errorf("%s: DeletionPolicy %v", id, b["DeletionPolicy"])
		}
	}
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::S3::Bucket"), map[string]any{
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"BucketEncryption": map[string]any{"ServerSideEncryptionConfiguration": []any{
			map[string]any{"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}},
		}},
	}, jsii.Number(2))
	// TLS only, for both buckets and all three queues.
	deny := map[string]any{"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
		assertions.Match_ObjectLike(&map[string]any{
			"Effect":    "Deny",
			"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
		}),
	})}}
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::S3::BucketPolicy"), deny, jsii.Number(2))
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::SQS::QueuePolicy"), deny, jsii.Number(3))

	// The course's names, kept on destroy, on request.
	course := synthWith(t, map[string]any{"courseNames": "true", "retainData": "true"})
	for _, name := range []string{"surge-in-bucket", "surge-out-bucket"} {
		(*course.template).HasResource(jsii.String("AWS::S3::Bucket"), map[string]any{
			"Properties": map[string]any{"BucketName": name}, "DeletionPolicy": "Retain",
		})
	}
	hooks := resources(course.json, "AWS::Lambda::Function")
	for id, fn := range hooks {
		b, _ := json.Marshal(fn)
		if strings.Contains(string(b), "SURGE_EMPTY_BUCKETS") {
			t.Errorf("%s empties buckets that are to be kept", id)
		}
	}
	// Kept under fixed names, they stop the next deployment of the prefix.
	course.annotations.HasWarning(jsii.String("/surge"), assertions.Match_StringLikeRegexp(jsii.String(
		"retainData: destroy keeps the results table surge-dynamoDB and the buckets surge-in-bucket and surge-out-bucket, so deploying this prefix again fails")))
}

// The results table: one item per file name, on demand, encrypted with a
// key the template names, continuous backups only on request, deleted
// with the stack unless the data is kept.
func TestResultsTable(t *testing.T) {
	tmpl, doc, _ := synth(t)
	table := func(pitr bool, policy string) map[string]any {
		return map[string]any{
			"Properties": map[string]any{
				"TableName":                        "surge-dynamoDB",
				"KeySchema":                        []any{map[string]any{"AttributeName": "name", "KeyType": "HASH"}},
				"AttributeDefinitions":             []any{map[string]any{"AttributeName": "name", "AttributeType": "S"}},
				"BillingMode":                      "PAY_PER_REQUEST",
				"ProvisionedThroughput":            assertions.Match_Absent(),
				"SSESpecification":                 map[string]any{"SSEEnabled": true, "SSEType": "KMS"},
				"KMSMasterKeyId":                   assertions.Match_Absent(),
				"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": pitr},
			},
			"DeletionPolicy":      policy,
			"UpdateReplacePolicy": policy,
		}
	}
	(*tmpl).HasResource(jsii.String("AWS::DynamoDB::Table"), table(false, "Delete"))
	(*tmpl).HasOutput(jsii.String("ResultsTableName"), map[string]any{"Value": map[string]any{"Ref": onlyID(t, doc, "AWS::DynamoDB::Table")}})
	// Nothing kept, nothing to warn about.
	synthWith(t, nil).annotations.HasNoWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("retainData")))

	kept := synthWith(t, map[string]any{"retainData": "true", "pointInTimeRecovery": "true"})
	(*kept.template).HasResource(jsii.String("AWS::DynamoDB::Table"), table(true, "Retain"))
	kept.annotations.HasWarning(jsii.String("/surge"), assertions.Match_StringLikeRegexp(jsii.String(
		"retainData: destroy keeps the results table surge-dynamoDB, so deploying this prefix again fails")))
}

// onlyID is the logical id of the one resource of typ.
func onlyID(t *testing.T, doc map[string]any, typ string) string {
	t.Helper()
	ids := slices.Collect(maps.Keys(resources(doc, typ)))
	if len(ids) != 1 {
		t.Fatalf("%d resources of type %s: %v", len(ids), typ, ids)
	}
	return ids[0]
}

// userData is the user data of the resources of typ, as JSON text (it
// is a CloudFormation expression, not a plain string).
func userData(t *testing.T, doc map[string]any, typ string) string {
	t.Helper()
	var out []string
	for _, r := range resources(doc, typ) {
		props := r["Properties"].(map[string]any)
		if data, ok := props["LaunchTemplateData"].(map[string]any); ok {
			props = data
		}
		b, _ := json.Marshal(props["UserData"])
		out = append(out, string(b))
	}
	if len(out) != 1 {
		t.Fatalf("%d %s with user data", len(out), typ)
	}
	return out[0]
}

func TestWorkerLaunchTemplate(t *testing.T) {
	tmpl, doc, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateName": "surge-worker",
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{
			"ImageId":                           map[string]any{"Ref": assertions.Match_StringLikeRegexp(jsii.String("SsmParameterValue.*al2023.*x8664"))},
			"InstanceType":                      "c7i.large",
			"InstanceInitiatedShutdownBehavior": "terminate",
			"MetadataOptions":                   assertions.Match_ObjectLike(&map[string]any{"HttpTokens": "required", "InstanceMetadataTags": "enabled"}),
			"BlockDeviceMappings": []any{map[string]any{
				"DeviceName": "/dev/xvda",
				"Ebs":        map[string]any{"Encrypted": true, "VolumeSize": 8, "VolumeType": "gp3"},
			}},
		}),
	})
	// The user data fetches the worker, the runtime and the model from the
	// assets with retries, ships its logs, and runs the worker under
	// systemd, powering off if it fails for good.
	script := userData(t, doc, "AWS::EC2::LaunchTemplate")
	for _, want := range []string{
		"/opt/surge/bin/worker 0755", "/opt/surge/lib/libonnxruntime.so.1 0644", "/opt/surge/models/mobilenetv2-12-int8/model.onnx",
		"/opt/surge/models/mobilenetv2-12-int8/labels.txt", "SURGE_BACKEND=aws", "SURGE_PREFIX=surge",
		"SURGE_IDLE_SHUTDOWN=60s", "SURGE_INPUT_BUCKET=", "SURGE_OUTPUT_BUCKET=", `SURGE_TABLE=",{"Ref":"ResultsTable`,
		"systemctl enable --now surge-worker.service",
		"retry aws s3 cp", "shutdown -h now", "OnFailure=surge-give-up.service", "amazon-cloudwatch-agent", "{instance_id}/worker",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("worker user data lacks %q", want)
		}
	}
	// A worker names its answers' model from the model it loaded.
	if strings.Contains(script, "SURGE_MODEL_NAME") {
		t.Error("the worker is told its model's name")
	}
}

func TestWebTier(t *testing.T) {
	tmpl, doc, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::Instance"), map[string]any{
		"Tags": assertions.Match_ArrayWith(&[]any{map[string]any{"Key": "Name", "Value": "web-instance"}}),
		"BlockDeviceMappings": []any{map[string]any{
			"DeviceName": "/dev/xvda",
			"Ebs":        map[string]any{"Encrypted": true, "VolumeSize": 8, "VolumeType": "gp3"},
		}},
		// IMDSv2 on the instance itself: no launch template, so no name
		// two stacks could both want.
		"MetadataOptions":  assertions.Match_ObjectLike(&map[string]any{"HttpTokens": "required"}),
		"SubnetId":         assertions.Match_AnyValue(),
		"AvailabilityZone": assertions.Match_Absent(),
	})
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::SecurityGroup"), map[string]any{
		"SecurityGroupIngress": []any{map[string]any{"CidrIp": "203.0.113.7/32", "FromPort": 8000, "ToPort": 8000, "IpProtocol": "tcp"}},
	})
	script := userData(t, doc, "AWS::EC2::Instance")
	for _, want := range []string{"/opt/surge/bin/webtier 0755", "SURGE_INPUT_BUCKET=", `SURGE_TABLE=",{"Ref":"ResultsTable`,
		`SURGE_MODEL_NAME=mobilenetv2-12-int8\n`, "SURGE_MAX_WORKERS=15\\n", "SURGE_PORT=8000\\n", "Restart=always", "{instance_id}/webtier"} {
		if !strings.Contains(script, want) {
			t.Errorf("web tier user data lacks %q", want)
		}
	}
	if strings.Contains(script, "shutdown") {
		t.Error("a failed web tier boot powers off; it should stay up to be looked at")
	}

	// The model's name the web tier expects of cached answers is the one
	// the workers give theirs: here from a model archive, and marked as
	// mapped through a gallery.
	gallery := filepath.Join(t.TempDir(), "faces.gallery")
	if err := os.WriteFile(gallery, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	fetched := synthWith(t, map[string]any{
		"modelUrl": "https://models.example.com/zoo/resnet50-v1-12.tar.gz", "modelSha256": strings.Repeat("0", 64), "gallery": gallery,
	})
	if script := userData(t, fetched.json, "AWS::EC2::Instance"); !strings.Contains(script, `SURGE_MODEL_NAME=resnet50-v1-12+gallery\n`) {
		t.Errorf("web tier user data names the model otherwise: %s", script)
	}
	for _, o := range []string{"WebUrl", "WebInstanceId", "RequestQueueName", "ResponseQueueName", "InputBucketName", "OutputBucketName", "ResultsTableName", "InstanceLogGroup", "ScalerFunction"} {
		(*tmpl).HasOutput(jsii.String(o), map[string]any{})
	}
}

// Issue 20, the web address: the stack is complete only once the web
// tier answers (a creation policy its boot signals, with the permission to
// signal this stack alone), and its address is an Elastic IP that follows
// the instance across replacements, which is what WebUrl names.
func TestWebTierReadyAndAddressed(t *testing.T) {
	tmpl, doc, _ := synth(t)
	web := resourceID(t, doc, "AWS::EC2::Instance", "WebInstance")
	instance := doc["Resources"].(map[string]any)[web].(map[string]any)
	policy, _ := json.Marshal(instance["CreationPolicy"])
	if string(policy) != `{"ResourceSignal":{"Count":1,"Timeout":"PT15M"}}` {
		t.Errorf("the web instance's creation policy: %s", policy)
	}
	script := userData(t, doc, "AWS::EC2::Instance")
	for _, want := range []string{"enable --now surge-webtier.service surge-ready.service", "cloudformation signal-resource", `--stack-name ",{"Ref":"AWS::StackName"}`, "/healthz"} {
		if !strings.Contains(script, want) {
			t.Errorf("web tier user data lacks %q", want)
		}
	}
	(*tmpl).HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]any{
		"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{map[string]any{
			"Sid": "SignalReady", "Action": "cloudformation:SignalResource", "Effect": "Allow", "Resource": map[string]any{"Ref": "AWS::StackId"},
		}})},
	})
	eip := resourceID(t, doc, "AWS::EC2::EIP", "WebAddress")
	(*tmpl).HasResourceProperties(jsii.String("AWS::EC2::EIPAssociation"), map[string]any{
		"AllocationId": map[string]any{"Fn::GetAtt": []any{eip, "AllocationId"}}, "InstanceId": map[string]any{"Ref": web},
	})
	url, _ := json.Marshal(doc["Outputs"].(map[string]any)["WebUrl"])
	if !strings.Contains(string(url), `{"Ref":"`+eip+`"}`) {
		t.Errorf("WebUrl does not name the Elastic IP: %s", url)
	}
}

func TestScaler(t *testing.T) {
	tmpl, doc, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Runtime":       "provided.al2023",
		"Architectures": []any{"arm64"},
		"Handler":       "scaler",
		"Timeout":       70, // internal/scaler's scalerTimeout: outlasts the 60 s window
		// A reservation fails the deployment on accounts whose concurrency
		// limit is 10, as new accounts' is: opt-in only.
		"ReservedConcurrentExecutions": assertions.Match_Absent(),
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{
			"SURGE_LAUNCH_TEMPLATE": "surge-worker", "SURGE_FLEET": "surge", "SURGE_MAX_WORKERS": "15", "SURGE_MIN_WORKERS": "0", "SURGE_WINDOW": "60s", "SURGE_BOOT_DEADLINE": "5m",
			"SURGE_POOL_SIZE":         "0",
			"SURGE_REQUEST_QUEUE_URL": assertions.Match_AnyValue(), "SURGE_SUBNETS": assertions.Match_AnyValue(),
		})},
	})
	// No retries of a minute that is over: the next minute is the retry.
	(*tmpl).ResourceCountIs(jsii.String("AWS::Lambda::EventInvokeConfig"), jsii.Number(1))
	(*tmpl).HasResourceProperties(jsii.String("AWS::Lambda::EventInvokeConfig"), map[string]any{
		"FunctionName":             map[string]any{"Ref": resourceID(t, doc, "AWS::Lambda::Function", "Scaler")},
		"Qualifier":                "$LATEST",
		"MaximumRetryAttempts":     0,
		"MaximumEventAgeInSeconds": 60,
	})
	(*tmpl).HasResourceProperties(jsii.String("AWS::Events::Rule"), map[string]any{"ScheduleExpression": "rate(1 minute)", "State": "ENABLED"})
	(*tmpl).ResourcePropertiesCountIs(jsii.String("AWS::Logs::LogGroup"), map[string]any{"RetentionInDays": 14}, jsii.Number(4)) // every log group

	reserved := synthWith(t, map[string]any{"scalerReservedConcurrency": "1", "poolSize": 3})
	(*reserved.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler": "scaler", "ReservedConcurrentExecutions": 1,
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{"SURGE_POOL_SIZE": "3"})},
	})

	warm := synthWith(t, map[string]any{"minWorkers": "1"})
	(*warm.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler":     "scaler",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{"SURGE_MIN_WORKERS": "1"})},
	})
	// Warm workers do not terminate themselves when idle; the scaler
	// scales in above the floor.
	if script := userData(t, warm.json, "AWS::EC2::LaunchTemplate"); !strings.Contains(script, "SURGE_IDLE_SHUTDOWN=0\\n") {
		t.Errorf("with minWorkers 1 the worker user data keeps its idle shutdown: %s", script)
	}
}

// The stack's hook runs on delete before everything the fleet uses goes,
// and is told what to restrict, stop and empty.
func TestStackHooks(t *testing.T) {
	tmpl, doc, _ := synth(t)
	(*tmpl).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler": "stackhooks",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{
			"SURGE_FLEET": "surge", "SURGE_VPC_ID": assertions.Match_AnyValue(), "SURGE_SCALER_FUNCTION": assertions.Match_AnyValue(),
			"SURGE_EMPTY_BUCKETS": assertions.Match_AnyValue(),
			// The scaler's own SURGE_WINDOW: after it, nothing launches.
			"SURGE_SCALER_WINDOW": "60s",
		})},
	})
	hooks := resources(doc, "Custom::SurgeStackHooks")
	if len(hooks) != 1 {
		t.Fatalf("%d stack hooks", len(hooks))
	}
	for _, h := range hooks {
		deps := strings_(h["DependsOn"])
		for _, typ := range []string{"AWS::EC2::SecurityGroup", "AWS::EC2::LaunchTemplate", "AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::Events::Rule", "AWS::EC2::Subnet", "AWS::EC2::Instance"} {
			found := false
			for id := range resources(doc, typ) {
				found = found || slices.Contains(deps, id)
			}
			if !found {
				t.Errorf("the hook does not depend on any %s (DependsOn %v)", typ, deps)
			}
		}
	}
}

// An existing VPC: the web instance takes its zone from its subnet, and
// the VPC's default security group is left to its owner.
func TestExistingVpc(t *testing.T) {
	s := synthWith(t, map[string]any{"vpcId": "vpc-0123456789abcdef0", "subnetIds": "subnet-0b23456789abcdef0,subnet-0c23456789abcdef0"})
	(*s.template).HasResourceProperties(jsii.String("AWS::EC2::Instance"), map[string]any{
		"SubnetId": "subnet-0b23456789abcdef0", "AvailabilityZone": assertions.Match_Absent(),
	})
	(*s.template).ResourceCountIs(jsii.String("AWS::EC2::VPC"), jsii.Number(0))
	for id, fn := range resources(s.json, "AWS::Lambda::Function") {
		b, _ := json.Marshal(fn)
		if strings.Contains(string(b), "SURGE_VPC_ID") {
			t.Errorf("%s restricts the default security group of a VPC the stack does not own", id)
		}
	}
}

// physicalNames are the values of every *Name property (BucketName,
// QueueName, LaunchTemplateName...) that the template fixes. An inline
// policy's PolicyName is not one: it is unique only within its role; nor
// is an alarm's MetricName, which names what it watches.
func physicalNames(doc map[string]any) map[string]string {
	names := map[string]string{}
	for id, r := range doc["Resources"].(map[string]any) {
		props, _ := r.(map[string]any)["Properties"].(map[string]any)
		for k, v := range props {
			if s, ok := v.(string); ok && strings.HasSuffix(k, "Name") && k != "PolicyName" && k != "MetricName" {
				names[s] = id + "." + k
			}
		}
		if data, ok := props["LaunchTemplateData"].(map[string]any); ok {
			for k, v := range data {
				if s, ok := v.(string); ok && strings.HasSuffix(k, "Name") {
					names[s] = id + ".LaunchTemplateData." + k
				}
			}
		}
	}
	return names
}

// Two deployments side by side in one account and region: nothing they
// name is the same.
func TestTwoPrefixesShareNoPhysicalName(t *testing.T) {
	for _, course := range []string{"false", "true"} {
		a := synthWith(t, map[string]any{"prefix": "alpha", "courseNames": course})
		b := synthWith(t, map[string]any{"prefix": "beta", "courseNames": course})
		namesA, namesB := physicalNames(a.json), physicalNames(b.json)
		// The queues, the launch template, the results table and the
		// dead-letter alarm, and the buckets under the course's names;
		// everything else is named by CloudFormation (or, as the
		// dashboard, by an expression of the prefix and region).
		if want := map[string]int{"false": 6, "true": 8}[course]; len(namesA) != want {
			t.Errorf("courseNames=%s: %d physical names, want %d: %v", course, len(namesA), want, namesA)
		}
		for n, where := range namesA {
			if other, ok := namesB[n]; ok {
				t.Errorf("courseNames=%s: both stacks name %q (%s, %s)", course, n, where, other)
			}
		}
		for _, s := range []*synthesis{a, b} {
			if _, err := os.Stat(filepath.Join(s.outdir, s.cfg.StackName+".template.json")); err != nil {
				t.Errorf("the stack's artifact is not named for its stack: %v", err)
			}
		}
	}
}

func TestLogsAndSessionManager(t *testing.T) {
	_, doc, _ := synth(t)
	policies, _ := json.Marshal(resources(doc, "AWS::IAM::Policy"))
	for _, want := range []string{"ShipLogs", "RegisterWithSessionManager", "ssmmessages:OpenDataChannel", "MarkOwnInstanceReady"} {
		if !strings.Contains(string(policies), want) {
			t.Errorf("no %s in the policies", want)
		}
	}
	off := synthWith(t, map[string]any{"ssm": "false"})
	policies, _ = json.Marshal(resources(off.json, "AWS::IAM::Policy"))
	if strings.Contains(string(policies), "ssmmessages") {
		t.Error("ssm=false still lets Session Manager in")
	}
}

// actionsWithoutResources lists the actions Surge uses that have no
// resource-level permissions, so only "*" can name their resource.
func actionsWithoutResources() []string {
	return []string{"ec2:DescribeInstances", "ec2:DescribeLaunchTemplates", "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules", "sqs:ListQueues",
		"ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"}
}

// checkStatements checks every statement of every policy of a template:
// no wildcard in any action, "*" as a resource only for actions that
// cannot name one, EC2 launches and terminations bound to the fleet tag,
// and roles passed only to EC2. It returns how many it checked.
func checkStatements(t *testing.T, doc map[string]any) int {
	t.Helper()
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
				case a == "ec2:CreateTags" && !strings.Contains(string(cond), `"ec2:CreateAction":"RunInstances"`) &&
					!(strings.Contains(string(cond), `"aws:ResourceTag/surge:fleet":"surge"`) &&
						(strings.Contains(string(cond), `"aws:TagKeys":["surge:ready"]`) || strings.Contains(string(cond), `"aws:TagKeys":["Name","surge:pool"]`))):
					t.Errorf("%s: CreateTags beyond launching, marking readiness and pooling: %s", where, cond)
				case a == "ec2:DeleteTags" && !(strings.Contains(string(cond), `"aws:ResourceTag/surge:fleet":"surge"`) && strings.Contains(string(cond), `"aws:TagKeys":["surge:ready"]`)):
					t.Errorf("%s: DeleteTags beyond clearing readiness: %s", where, cond)
				case (a == "ec2:StopInstances" || a == "ec2:StartInstances") && !strings.Contains(string(cond), `"aws:ResourceTag/surge:fleet":"surge"`):
					t.Errorf("%s: %s not bound to the fleet tag", where, a)
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
	return statements
}

// Every statement of every policy: no wildcard in any action, "*" as a
// resource only for actions that cannot name one, EC2 launches and
// terminations bound to the fleet tag, and roles passed only to EC2.
func TestLeastPrivilege(t *testing.T) {
	_, doc, _ := synth(t)
	statements := checkStatements(t, doc)
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

	// The web tier may read dead letters, never delete them.
	for id, p := range resources(doc, "AWS::IAM::Policy") {
		b, _ := json.Marshal(p)
		if !strings.Contains(id, "WebRole") {
			continue
		}
		if !strings.Contains(string(b), `"Sid":"WatchDeadLetters"`) || !strings.Contains(string(b), `"sqs:ReceiveMessage","sqs:GetQueueAttributes","sqs:GetQueueUrl"],"Effect":"Allow","Resource":{"Fn::GetAtt":["RequestDeadLetters`) {
			t.Errorf("%s: the web tier cannot read the dead-letter queue: %s", id, b)
		}
	}

	// The table: the web tier looks answers up, the workers record them,
	// on the table alone; nobody scans, queries, updates or deletes.
	table := map[string]any{"Fn::GetAtt": []any{onlyID(t, doc, "AWS::DynamoDB::Table"), "Arn"}}
	got := map[string][]string{}
	for id, p := range resources(doc, "AWS::IAM::Policy") {
		props := p["Properties"].(map[string]any)
		for _, s := range props["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			st := s.(map[string]any)
			for _, a := range strings_(st["Action"]) {
				if !strings.HasPrefix(a, "dynamodb:") {
					continue
				}
				if r := asSlice(st["Resource"]); len(r) != 1 || !reflect.DeepEqual(r[0], table) {
					t.Errorf("%s: %s on %v, not the table alone", id, a, st["Resource"])
				}
				for _, role := range asSlice(props["Roles"]) {
					ref := fmt.Sprint(role.(map[string]any)["Ref"])
					got[ref] = append(got[ref], a)
				}
			}
		}
	}
	want := map[string][]string{roleID(t, doc, "WebRole"): {"dynamodb:GetItem"}, roleID(t, doc, "WorkerRole"): {"dynamodb:PutItem"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DynamoDB actions by role: %v, want %v", got, want)
	}
}

// roleID is the logical id of the role whose construct id is name.
func roleID(t *testing.T, doc map[string]any, name string) string {
	t.Helper()
	return resourceID(t, doc, "AWS::IAM::Role", name)
}

// resourceID is the logical id of the resource of type typ whose
// construct id is name.
func resourceID(t *testing.T, doc map[string]any, typ, name string) string {
	t.Helper()
	for id := range resources(doc, typ) {
		if strings.HasPrefix(id, name) {
			return id
		}
	}
	t.Fatalf("no %s %s", typ, name)
	return ""
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

// contextNode is what configFromContext reads ctx through: a CDK app's
// node, as in `cdk synth`; under -short, which starts no jsii runtime
// (node), a fakeContext.
func contextNode(ctx map[string]any) contextReader {
	if testing.Short() {
		return fakeContext(ctx)
	}
	return awscdk.NewApp(&awscdk.AppProps{Context: &ctx}).Node()
}

// fakeContext stands in for a CDK app's node in the fast tier: the
// context it was given, by key.
type fakeContext map[string]any

func (c fakeContext) TryGetContext(key *string) any { return c[*key] }

func (c fakeContext) GetAllContext(*map[string]any) any { return map[string]any(c) }

// runtimeFiles are the model folder and the x86 and arm64 ONNX Runtime
// libraries a context names: the real ones, or under -short stand-ins,
// which is all configFromContext looks at (that the model's files are
// there; that a library is an ELF file for the workers' CPU).
func runtimeFiles(t *testing.T) (modelDir, x86Lib, armLib string) {
	t.Helper()
	if !testing.Short() {
		return testenv.Path(t, "models", "mobilenetv2-12-int8"), testenv.RuntimeLibFor(t, "amd64"), testenv.RuntimeLibFor(t, "arm64")
	}
	dir := t.TempDir()
	modelDir = filepath.Join(dir, "model")
	if err := os.Mkdir(modelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(modelDir, "model.onnx"), filepath.Join(modelDir, "labels.txt")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return modelDir, emptyLibrary(t, dir, elf.EM_X86_64), emptyLibrary(t, dir, elf.EM_AARCH64)
}

// emptyLibrary is a stand-in for a shared library of machine's: an ELF
// header alone, with no sections, so no symbols and no glibc needs.
func emptyLibrary(t *testing.T, dir string, machine elf.Machine) string {
	t.Helper()
	h := make([]byte, 64)
	copy(h, elf.ELFMAG)
	h[elf.EI_CLASS], h[elf.EI_DATA], h[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le := binary.LittleEndian
	le.PutUint16(h[16:], uint16(elf.ET_DYN))
	le.PutUint16(h[18:], uint16(machine))
	le.PutUint32(h[20:], uint32(elf.EV_CURRENT))
	le.PutUint16(h[52:], 64) // header size
	le.PutUint16(h[54:], 56) // program header entry size
	le.PutUint16(h[58:], 64) // section header entry size
	path := filepath.Join(dir, machine.String()+".so")
	if err := os.WriteFile(path, h, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestContextValidation(t *testing.T) {
	repo := testenv.Root(t)
	modelDir, ortLib, armLib := runtimeFiles(t)
	// Each case below is refused for its own mistake: without it the
	// context is accepted.
	for _, ctx := range []map[string]any{
		{"modelDir": modelDir, "ortLib": ortLib},
		{"modelDir": modelDir, "ortLib": armLib, "workerInstanceType": "t4g.small", "webInstanceType": "m7gd.large"},
		{"modelDir": modelDir, "ortLib": ortLib, "webInstanceType": "c7g.large"},
		{"modelDir": modelDir, "ortLib": ortLib, "webMax": "4", "vpcId": "vpc-123", "subnetIds": "subnet-1,subnet-2"},
		{"modelDir": modelDir, "ortLib": ortLib, "webMax": "1", "course": "2026"},
		{"modelDir": modelDir, "ortLib": ortLib, "webMax": "3", "webMin": "3"},
	} {
		if _, err := configFromContext(contextNode(ctx), repo); err != nil {
			t.Fatalf("%v is refused: %v", ctx, err)
		}
	}
	for name, ctx := range map[string]map[string]any{
		"bad cidr":                    {"allowedCidr": "everyone"},
		"bad prefix":                  {"prefix": "Surge_Prod"},
		"prefix S3 reserves":          {"prefix": "xn--surge"},
		"prefix ends in -":            {"prefix": "surge-"},
		"vpc without subnets":         {"vpcId": "vpc-123"},
		"url without digest":          {"modelUrl": "https://example.com/m.tar.gz"},
		"missing model folder":        {"modelDir": filepath.Join(t.TempDir(), "nope")},
		"bad maximum":                 {"maxWorkers": "0"},
		"negative minimum":            {"minWorkers": "-1"},
		"minimum over the cap":        {"maxWorkers": "3", "minWorkers": "4"},
		"minimum not a number":        {"minWorkers": "one"},
		"not a boolean":               {"retainData": "yes"},
		"negative reservation":        {"scalerReservedConcurrency": "-1"},
		"negative pool":               {"poolSize": "-2"},
		"pool not a number":           {"poolSize": "some"},
		"bad deadline":                {"bootDeadline": "soon"},
		"unknown course":              {"course": "2025"},
		"backups not boolean":         {"pointInTimeRecovery": "on"},
		"email and topic":             {"alarmEmail": "ops@example.com", "alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:ops"},
		"not an email":                {"alarmEmail": "ops.example.com"},
		"not a topic":                 {"alarmTopicArn": "arn:aws:sqs:us-east-1:123456789012:ops"},
		"misspelt key":                {"maxWorker": "5"},
		"x86 runtime for arm workers": {"workerInstanceType": "t4g.small", "ortLib": ortLib},
		"arm runtime for x86 workers": {"ortLib": armLib},
		"runtime not a library":       {"ortLib": filepath.Join(modelDir, "labels.txt")},
		"no web instance":             {"webMax": "0"},
		"web cap not a number":        {"webMax": "many"},
		"web group for the course":    {"webMax": "4", "course": "2026"},
		"web group in one subnet":     {"webMax": "4", "vpcId": "vpc-123", "subnetIds": "subnet-1"},
		"one web instance at least":   {"webMax": "4", "webMin": "1"},
		"more web instances than max": {"webMax": "4", "webMin": "5"},
		"web minimum without a group": {"webMin": "3"},
	} {
		if _, ok := ctx["ortLib"]; !ok {
			ctx["ortLib"] = ortLib
		}
		if _, ok := ctx["modelDir"]; !ok {
			ctx["modelDir"] = modelDir
		}
		if _, err := configFromContext(contextNode(ctx), repo); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The course switch changes defaults only: what the context says
// explicitly wins.
func TestCourseDefaults(t *testing.T) {
	repo := testenv.Root(t)
	modelDir, ortLib, _ := runtimeFiles(t)
	for name, tc := range map[string]struct {
		ctx         map[string]any
		maxWorkers  int
		courseNames bool
		limit       int
	}{
		"no course":                    {map[string]any{}, 19, false, 0},
		"no course, explicit cap":      {map[string]any{"maxWorkers": "7"}, 7, false, 0},
		"no course, course names":      {map[string]any{"courseNames": "true"}, 19, true, 0},
		"2026":                         {map[string]any{"course": "2026"}, 15, true, 15},
		"2026 from cdk.json, a number": {map[string]any{"course": float64(2026)}, 15, true, 15},
		"2026, explicit cap":           {map[string]any{"course": "2026", "maxWorkers": "18"}, 18, true, 15},
		"2026, smaller cap":            {map[string]any{"course": "2026", "maxWorkers": "4"}, 4, true, 15},
		"2026, unique bucket names":    {map[string]any{"course": "2026", "courseNames": "false"}, 15, false, 15},
	} {
		tc.ctx["ortLib"] = ortLib
		tc.ctx["modelDir"] = modelDir
		cfg, err := configFromContext(contextNode(tc.ctx), repo)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.MaxWorkers != tc.maxWorkers || cfg.CourseNames != tc.courseNames || cfg.CourseLimit != tc.limit {
			t.Errorf("%s: maxWorkers %d, courseNames %v, limit %d; want %d, %v, %d",
				name, cfg.MaxWorkers, cfg.CourseNames, cfg.CourseLimit, tc.maxWorkers, tc.courseNames, tc.limit)
		}
	}
	if _, err := configFromContext(contextNode(map[string]any{"course": "2025", "modelDir": modelDir, "ortLib": ortLib}), repo); err == nil || !strings.Contains(err.Error(), "valid values are 2026") {
		t.Errorf("an unknown course is refused without naming the valid ones: %v", err)
	}
}

// The 2026 course in the template: a fleet of at most 15 for the scaler
// and the web tier's status, the exact bucket names; a larger explicit
// cap deploys, with a warning.
func TestCourse2026(t *testing.T) {
	s := synthWith(t, map[string]any{"course": "2026", "maxWorkers": nil})
	(*s.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler":     "scaler",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{"SURGE_MAX_WORKERS": "15"})},
	})
	if script := userData(t, s.json, "AWS::EC2::Instance"); !strings.Contains(script, "SURGE_MAX_WORKERS=15\\n") {
		t.Errorf("the web tier's cap is not 15: %s", script)
	}
	for _, name := range []string{"surge-in-bucket", "surge-out-bucket"} {
		(*s.template).HasResourceProperties(jsii.String("AWS::S3::Bucket"), map[string]any{"BucketName": name})
	}
	s.annotations.HasNoWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("course")))

	over := synthWith(t, map[string]any{"course": "2026", "maxWorkers": "18"})
	(*over.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler":     "scaler",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{"SURGE_MAX_WORKERS": "18"})},
	})
	over.annotations.HasWarning(jsii.String("/surge"), assertions.Match_StringLikeRegexp(jsii.String(
		"maxWorkers 18: the course 2026 grader fails a fleet above 15")))
}

// The 2026 grader names everything after the student's ASU ID, a
// 10-digit number: the course's names, under a stack name CloudFormation
// accepts (it must start with a letter).
func TestASUIDPrefix(t *testing.T) {
	s := synthWith(t, map[string]any{"prefix": "1225754101", "course": "2026", "maxWorkers": nil})
	for _, q := range []string{"1225754101-req-queue", "1225754101-resp-queue", "1225754101-req-dlq"} {
		(*s.template).HasResourceProperties(jsii.String("AWS::SQS::Queue"), map[string]any{"QueueName": q})
	}
	for _, b := range []string{"1225754101-in-bucket", "1225754101-out-bucket"} {
		(*s.template).HasResourceProperties(jsii.String("AWS::S3::Bucket"), map[string]any{"BucketName": b})
	}
	(*s.template).HasResourceProperties(jsii.String("AWS::DynamoDB::Table"), map[string]any{"TableName": "1225754101-dynamoDB"})
	(*s.template).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{"LaunchTemplateName": "1225754101-worker"})
	(*s.template).HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]any{
		"Handler":     "scaler",
		"Environment": map[string]any{"Variables": assertions.Match_ObjectLike(&map[string]any{"SURGE_FLEET": "1225754101", "SURGE_MAX_WORKERS": "15"})},
	})

	// The stack as the cloud assembly names it for cdk deploy.
	b, err := os.ReadFile(filepath.Join(s.outdir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Artifacts map[string]struct {
			Type       string `json:"type"`
			Properties struct {
				StackName    string `json:"stackName"`
				TemplateFile string `json:"templateFile"`
			} `json:"properties"`
		} `json:"artifacts"`
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	cfnName := regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]*$`)
	stacks := 0
	for id, a := range manifest.Artifacts {
		if a.Type != "aws:cloudformation:stack" {
			continue
		}
		stacks++
		name := a.Properties.StackName
		if name == "" {
			// The manifest leaves out a name that is the artifact's id.
			name = id
		}
		if !cfnName.MatchString(name) || len(name) > 128 {
			t.Errorf("stack %s is named %q, which CloudFormation refuses ([a-zA-Z][-a-zA-Z0-9]*, at most 128)", id, name)
		}
		if name != "surge-1225754101" || id != name || a.Properties.TemplateFile != name+".template.json" {
			t.Errorf("stack %s: name %q, template %s; want surge-1225754101 throughout", id, name, a.Properties.TemplateFile)
		}
	}
	if stacks != 1 {
		t.Errorf("%d stacks in the cloud assembly", stacks)
	}
}

// The scaler launches only from the stack's launch template, as AWS's
// "Launch templates" example policies require one: every RunInstances
// statement has ec2:LaunchTemplate, and the resources the template names
// (its image, its security group) must come from it
// (ec2:IsLaunchTemplateResource), so a launch cannot swap in another
// image; the subnets the scaler names itself, to spread the fleet over
// zones, are the stack's only.
func TestScalerLaunchesOnlyFromItsTemplate(t *testing.T) {
	for _, s := range []*synthesis{synthWith(t, nil), synthWith(t, map[string]any{"vpcId": "vpc-0123456789abcdef0", "subnetIds": "subnet-0b23456789abcdef0,subnet-0c23456789abcdef0"})} {
		doc := s.json
		template := fmt.Sprintf(`":launch-template/",{"Ref":"%s"}`, resourceID(t, doc, "AWS::EC2::LaunchTemplate", "WorkerTemplate"))
		launches, fromTemplate := 0, 0
		for id, p := range resources(doc, "AWS::IAM::Policy") {
			for _, st := range p["Properties"].(map[string]any)["PolicyDocument"].(map[string]any)["Statement"].([]any) {
				st := st.(map[string]any)
				if !slices.Contains(strings_(st["Action"]), "ec2:RunInstances") {
					continue
				}
				launches++
				cond, _ := json.Marshal(st["Condition"])
				res, _ := json.Marshal(st["Resource"])
				if !strings.Contains(string(cond), `"ec2:LaunchTemplate":{"Fn::Join"`) || !strings.Contains(string(cond), template) {
					t.Errorf("%s %v: RunInstances on %s without the stack's launch template: %s", id, st["Sid"], res, cond)
				}
				if strings.Contains(string(res), ":image/") || strings.Contains(string(res), ":security-group/") {
					fromTemplate++
					if !strings.Contains(string(cond), `"Bool":{"ec2:IsLaunchTemplateResource":"true"}`) {
						t.Errorf("%s %v: the image or security group need not be the template's: %s", id, st["Sid"], cond)
					}
				}
				if strings.Contains(string(res), ":subnet/*") {
					t.Errorf("%s %v: launches into any subnet: %s", id, st["Sid"], res)
				}
			}
		}
		if launches < 2 || fromTemplate < 1 {
			t.Errorf("%d RunInstances statements, %d on the template's own resources", launches, fromTemplate)
		}
	}
}

// T3 instances launch as unlimited unless told otherwise, and pay for
// surplus credits under sustained load: the workers, busy whenever they
// exist, default to a non-burstable type; a burstable type, the web
// tier's by default, runs standard. A credit specification only on
// burstable types: EC2 refuses one on any other.
func TestCreditSpecification(t *testing.T) {
	s := synthWith(t, nil)
	(*s.template).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{"InstanceType": "c7i.large", "CreditSpecification": assertions.Match_Absent()}),
	})
	(*s.template).HasResourceProperties(jsii.String("AWS::EC2::Instance"), map[string]any{
		"InstanceType": "t3.small", "CreditSpecification": map[string]any{"CPUCredits": "standard"},
	})

	swapped := synthWith(t, map[string]any{"workerInstanceType": "t3a.medium", "webInstanceType": "m7i.large"})
	(*swapped.template).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{"InstanceType": "t3a.medium", "CreditSpecification": map[string]any{"CpuCredits": "standard"}}),
	})
	(*swapped.template).HasResourceProperties(jsii.String("AWS::EC2::Instance"), map[string]any{
		"InstanceType": "m7i.large", "CreditSpecification": assertions.Match_Absent(),
	})
}

// Issue 21, Graviton: with Arm workers (t4g.small) beside an x86 web
// tier, the workers' launch template takes Amazon Linux 2023's arm64 image
// and ships the arm64 builds of the worker and of ONNX Runtime, the web
// instance the x86 ones; the template passes cfn-lint.
func TestGravitonWorkersBesideAnX86WebTier(t *testing.T) {
	s := synthWith(t, map[string]any{"workerInstanceType": "t4g.small"})
	image := func(typ string) string {
		t.Helper()
		for _, r := range resources(s.json, typ) {
			props := r["Properties"].(map[string]any)
			if data, ok := props["LaunchTemplateData"].(map[string]any); ok {
				props = data
			}
			ref, _ := props["ImageId"].(map[string]any)["Ref"].(string)
			param, _ := s.json["Parameters"].(map[string]any)[ref].(map[string]any)
			def, _ := param["Default"].(string)
			return def
		}
		t.Fatalf("no %s", typ)
		return ""
	}
	if got := image("AWS::EC2::LaunchTemplate"); !strings.HasSuffix(got, "-arm64") {
		t.Errorf("the workers' image parameter %q, want Amazon Linux 2023 for arm64", got)
	}
	if got := image("AWS::EC2::Instance"); !strings.HasSuffix(got, "-x86_64") {
		t.Errorf("the web tier's image parameter %q, want Amazon Linux 2023 for x86_64", got)
	}
	(*s.template).HasResourceProperties(jsii.String("AWS::EC2::LaunchTemplate"), map[string]any{
		"LaunchTemplateData": assertions.Match_ObjectLike(&map[string]any{
			"InstanceType": "t4g.small", "CreditSpecification": map[string]any{"CpuCredits": "standard"},
		}),
	})
	for asset, want := range map[string]elf.Machine{"WorkerBinary": elf.EM_AARCH64, "OnnxRuntime": elf.EM_AARCH64, "WebBinary": elf.EM_X86_64} {
		f, err := elf.Open(assetPath(t, s, asset))
		if err != nil {
			t.Fatalf("asset %s: %v", asset, err)
		}
		if f.Machine != want {
			t.Errorf("asset %s is for %v, want %v", asset, f.Machine, want)
		}
		f.Close()
	}
	if out, err := exec.Command("cfn-lint", "--ignore-checks", "W3005", "--", filepath.Join(s.outdir, s.cfg.StackName+".template.json")).CombinedOutput(); err != nil {
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}
}

// assetPath is the file of the synthesized asset named name (its display
// name in the assembly's asset manifest).
func assetPath(t *testing.T, s *synthesis, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.outdir, s.cfg.StackName+".assets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct {
		Files map[string]struct {
			DisplayName string `json:"displayName"`
			Source      struct{ Path string }
		}
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	for _, f := range manifest.Files {
		if f.DisplayName == name {
			return filepath.Join(s.outdir, f.Source.Path)
		}
	}
	t.Fatalf("no asset %s in the assembly", name)
	return ""
}
