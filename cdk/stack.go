package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsautoscaling"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awselasticloadbalancingv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/assets"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/deploy"
)

// requestVisibility is the protocol's, in whole seconds for SQS. The worker
// extends it every third while it works, so it only bounds how soon a lost
// worker's request comes back.
var requestVisibility = int(events.RequestVisibility / time.Second)

// scalerWindow is how long one scaler invocation reconciles from its
// scheduled time: the schedule's period, so one minute's decisions end a
// tick before the next minute's begin (scaler.DefaultWindow).
const scalerWindow = "60s"

// scalerTimeout outlasts the window by the handler's margin and a late
// delivery, so that the window, not the deadline, ends an invocation.
const scalerTimeout = 70

// Handler names: custom runtimes ignore a function's handler, so it names
// which of Surge's functions the code is, for people and for the emulator.
const (
	scalerHandler = "scaler"
	hooksHandler  = "stackhooks"
)

// NewSurgeStack defines the whole deployment. Its construct id is the
// stack's name, which the CLI selects it by and names its template after;
// the prefix names everything in it, so two deployments in one account and
// region name nothing alike.
func NewSurgeStack(scope constructs.Construct, cfg Config, props *awscdk.StackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, jsii.String(cfg.StackName), props)
	s := &surge{stack: stack, cfg: cfg, names: events.NamesFor(cfg.Prefix)}

	s.network()
	s.queuesAndBuckets()
	s.resultsTable()
	s.retainedNames()
	s.courseLimit()
	s.instanceLogs()
	s.metricLogs()
	s.workers()
	s.webTier()
	s.scaler()
	s.hooks()
	s.monitoring()
	s.outputs()
	return stack
}

type surge struct {
	stack awscdk.Stack
	cfg   Config
	names events.Names

	vpc            awsec2.IVpc
	newVpc         awsec2.Vpc // nil for an existing VPC
	subnets        []*string
	dlq, req, resp awssqs.Queue
	in, out        awss3.Bucket
	table          awsdynamodb.Table
	modelName      string           // what the workers' answers say their model is
	logs           awslogs.LogGroup // the instances'
	emfLogs        awslogs.LogGroup // the tiers' embedded-metric-format lines
	workerRole     awsiam.Role
	workerSG       awsec2.SecurityGroup
	template       awsec2.LaunchTemplate
	web            awsec2.Instance // the one web-instance; nil with webMax above 1
	webAddress     awsec2.CfnEIP
	webGroup       awsautoscaling.AutoScalingGroup                   // with webMax above 1: the web instances
	webLB          awselasticloadbalancingv2.ApplicationLoadBalancer // and their front
	scalerFn       awslambda.Function
	schedule       awsevents.Rule
}

func (s *surge) id(name string) *string { return jsii.String(name) }

// network is a new VPC with public subnets only (no NAT gateway to pay
// for), or the one named in context.
func (s *surge) network() {
	if s.cfg.VpcID != "" {
		// The zones listed here are placeholders CDK requires; nothing
		// takes a zone from them (see webTier), since which zone each
		// subnet is in is not known at synth time.
		azs := make([]*string, len(s.cfg.SubnetIDs))
		for i := range azs {
			azs[i] = awscdk.Fn_Select(jsii.Number(float64(i)), awscdk.Fn_GetAzs(nil))
		}
		s.vpc = awsec2.Vpc_FromVpcAttributes(s.stack, s.id("Vpc"), &awsec2.VpcAttributes{
			VpcId:             jsii.String(s.cfg.VpcID),
			AvailabilityZones: &azs,
			PublicSubnetIds:   jsii.Strings(s.cfg.SubnetIDs...),
		})
		s.subnets = *jsii.Strings(s.cfg.SubnetIDs...)
		return
	}
	vpc := awsec2.NewVpc(s.stack, s.id("Vpc"), &awsec2.VpcProps{
		MaxAzs:      jsii.Number(2),
		NatGateways: jsii.Number(0),
		SubnetConfiguration: &[]*awsec2.SubnetConfiguration{{
			Name: jsii.String("public"), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(24),
		}},
		// The stack's own hook locks the default security group down
		// (see hooks): CDK's way is a Node.js custom resource.
		RestrictDefaultSecurityGroup: jsii.Bool(false),
	})
	s.vpc, s.newVpc = vpc, vpc
	for _, sn := range *vpc.PublicSubnets() {
		s.subnets = append(s.subnets, sn.SubnetId())
	}
}

func (s *surge) queuesAndBuckets() {
	s.dlq = awssqs.NewQueue(s.stack, s.id("RequestDeadLetters"), &awssqs.QueueProps{
		QueueName:       jsii.String(s.names.RequestDeadLetters),
		RetentionPeriod: awscdk.Duration_Days(jsii.Number(14)),
		Encryption:      awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:      jsii.Bool(true),
	})
	s.req = awssqs.NewQueue(s.stack, s.id("RequestQueue"), &awssqs.QueueProps{
		QueueName:           jsii.String(s.names.RequestQueue),
		MaxMessageSizeBytes: jsii.Number(events.MaxRequestBytes),
		VisibilityTimeout:   awscdk.Duration_Seconds(jsii.Number(requestVisibility)),
		DeadLetterQueue:     &awssqs.DeadLetterQueue{Queue: s.dlq, MaxReceiveCount: jsii.Number(events.MaxReceives)},
		Encryption:          awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:          jsii.Bool(true),
	})
	s.resp = awssqs.NewQueue(s.stack, s.id("ResponseQueue"), &awssqs.QueueProps{
		QueueName:  jsii.String(s.names.ResponseQueue),
		Encryption: awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL: jsii.Bool(true),
	})
	bucket := func(id, courseName string) awss3.Bucket {
		var name *string
		if s.cfg.CourseNames {
			name = jsii.String(courseName)
		}
		return awss3.NewBucket(s.stack, s.id(id), &awss3.BucketProps{
			BucketName:        name,
			BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
			Encryption:        awss3.BucketEncryption_S3_MANAGED,
			EnforceSSL:        jsii.Bool(true),
			ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
			// The stack's hook empties them before they go (S3 refuses to
			// delete a bucket that holds objects).
			RemovalPolicy: s.dataRemoval(),
		})
	}
	s.in = bucket("InputBucket", s.names.InputBucket)
	s.out = bucket("OutputBucket", s.names.OutputBucket)
}

// dataRemoval is what destroy does with the buckets and the table:
// deletes them, unless the deployment keeps its data.
func (s *surge) dataRemoval() awscdk.RemovalPolicy {
	if s.cfg.RetainData {
		return awscdk.RemovalPolicy_RETAIN
	}
	return awscdk.RemovalPolicy_DESTROY
}

// resultsTable keeps one answer per file name: the course's record of
// every request, and the web tier's cache. Table, not TableV2: TableV2 is
// an AWS::DynamoDB::GlobalTable, replication this one-region table does
// not need, and a resource type moto's CloudFormation cannot create, so
// the emulated deployment could not carry it.
func (s *surge) resultsTable() {
	s.table = awsdynamodb.NewTable(s.stack, s.id("ResultsTable"), &awsdynamodb.TableProps{
		TableName:    jsii.String(s.names.Table),
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("name"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:  awsdynamodb.BillingMode_PAY_PER_REQUEST,
		// The AWS managed key (aws/dynamodb), so the template states
		// SSEEnabled: true; the AWS owned key would read "SSEEnabled:
		// false". Its key policy, written by AWS, lets every principal of
		// the account that may use DynamoDB use the key through DynamoDB,
		// so the roles need no kms: actions; KMS bills its requests, and
		// DynamoDB caches the table key, so they are few.
		Encryption: awsdynamodb.TableEncryption_AWS_MANAGED,
		// Explicit either way: continuous backups are billed per GB-month.
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(s.cfg.PointInTimeRecovery),
		},
		// Deleting a table deletes its items: nothing to empty first.
		RemovalPolicy: s.dataRemoval(),
	})
	// CDK leaves SSEType out, which means KMS; say so.
	s.table.Node().DefaultChild().(awsdynamodb.CfnTable).AddPropertyOverride(jsii.String("SSESpecification.SSEType"), jsii.String("KMS"))
}

// retainedNames warns that a kept resource with a fixed name blocks the
// next deployment of the prefix.
func (s *surge) retainedNames() {
	if !s.cfg.RetainData {
		return
	}
	kept := "the results table " + s.names.Table
	if s.cfg.CourseNames {
		kept += " and the buckets " + s.names.InputBucket + " and " + s.names.OutputBucket
	}
	awscdk.Annotations_Of(s.stack).AddWarningV2(jsii.String("surge:retained-names"), jsii.String(
		"retainData: destroy keeps "+kept+", so deploying this prefix again fails until you delete them"))
}

// courseLimit warns when the fleet may grow past what the course's
// grader accepts.
func (s *surge) courseLimit() {
	if s.cfg.CourseLimit > 0 && s.cfg.MaxWorkers > s.cfg.CourseLimit {
		awscdk.Annotations_Of(s.stack).AddWarningV2(jsii.String("surge:course-limit"), jsii.String(fmt.Sprintf(
			"maxWorkers %d: the course %s grader fails a fleet above %d", s.cfg.MaxWorkers, s.cfg.Course, s.cfg.CourseLimit)))
	}
}

// instanceLogs is where the instances' CloudWatch agents ship the
// services' and the boots' logs.
func (s *surge) instanceLogs() {
	s.logs = awslogs.NewLogGroup(s.stack, s.id("InstanceLogs"), &awslogs.LogGroupProps{
		Retention:     retention(s.cfg.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}

// asset is a file the instances download at boot.
type asset struct {
	a    awss3assets.Asset
	dest string
	mode string
}

func (s *surge) fileAsset(id, path, dest string) asset {
	return asset{a: awss3assets.NewAsset(s.stack, s.id(id), &awss3assets.AssetProps{Path: jsii.String(path)}), dest: dest, mode: "0644"}
}

// binaryAsset is one of the repository's commands built for an instance
// of arch (amd64 or arm64).
func (s *surge) binaryAsset(id, pkg, name, arch string) asset {
	b, hash := bundling(goBuild{repo: s.cfg.Repo, pkg: pkg, binary: name, goos: "linux", goarch: arch}, awscdk.BundlingOutput_SINGLE_FILE)
	return asset{a: awss3assets.NewAsset(s.stack, s.id(id), &awss3assets.AssetProps{
		Path:          jsii.String(filepath.Join(s.cfg.Repo, strings.TrimPrefix(pkg, "./"))),
		AssetHashType: awscdk.AssetHashType_CUSTOM,
		AssetHash:     hash,
		Bundling:      b,
	}), dest: "/opt/surge/bin/" + name, mode: "0755"}
}

// bootScript renders an instance's user data for svc, fetching assets,
// and grants role exactly what the boot and the service's logs need.
func (s *surge) bootScript(role awsiam.Role, svc deploy.Service, assets ...asset) string {
	var objects []*string
	for _, a := range assets {
		svc.Files = append(svc.Files, deploy.ServiceFile{Source: *a.a.S3ObjectUrl(), Path: a.dest, Mode: a.mode})
		objects = append(objects, a.a.Bucket().ArnForObjects(a.a.S3ObjectKey()))
	}
	svc.Region = *awscdk.Aws_REGION()
	svc.LogGroup = *s.logs.LogGroupName()
	svc.MetricsLogGroup = *s.emfLogs.LogGroupName()
	// The dimension of the tiers' metrics, as of the scaler's, unless the
	// service has one of its own (a web group's).
	if _, ok := svc.Env["SURGE_FLEET"]; !ok {
		svc.Env["SURGE_FLEET"] = s.names.Fleet
	}
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("DownloadOwnAssets"),
		Actions:   jsii.Strings("s3:GetObject"),
		Resources: &objects,
	}))
	role.AddToPolicy(statement("ShipLogs", []string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}, s.logs.LogGroupArn()))
	// The agent's EMF lines, into the group they name. No
	// logs:CreateLogGroup: the group is the stack's, made before any
	// instance, and an agent must not make one without its retention.
	// No cloudwatch:PutMetricData: CloudWatch Logs extracts the metrics.
	role.AddToPolicy(statement("ShipMetrics", []string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}, s.emfLogs.LogGroupArn()))
	if s.cfg.SSM {
		// Session Manager's minimum (its agent registers the instance and
		// opens channels), instead of the broad AmazonSSMManagedInstanceCore.
		role.AddToPolicy(statement("RegisterWithSessionManager", []string{"ssm:UpdateInstanceInformation"}, s.ec2ARN("instance", "*")))
		role.AddToPolicy(statement("OpenSessions", []string{
			"ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
		}, jsii.String("*")))
	}
	script, err := deploy.RenderUserData(svc)
	if err != nil {
		panic(err)
	}
	return script
}

// ec2ARN is the ARN of an EC2 resource of this stack's account (or of
// no account, for images) and region.
func (s *surge) ec2ARN(resource, name string, account ...string) *string {
	c := &awscdk.ArnComponents{Service: jsii.String("ec2"), Resource: jsii.String(resource), ResourceName: jsii.String(name)}
	if len(account) > 0 {
		c.Account = jsii.String(account[0])
	}
	return s.stack.FormatArn(c)
}

// storageEnv tells a service which buckets and table are its.
func (s *surge) storageEnv(env map[string]string) map[string]string {
	env["SURGE_INPUT_BUCKET"] = *s.in.BucketName()
	env["SURGE_OUTPUT_BUCKET"] = *s.out.BucketName()
	env["SURGE_TABLE"] = *s.table.TableName()
	return env
}

func (s *surge) workers() {
	s.workerRole = awsiam.NewRole(s.stack, s.id("WorkerRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String("Surge workers: take requests, read inputs, write outputs and answers, end their own instance"),
	})
	r := s.workerRole
	r.AddToPolicy(statement("TakeRequests", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"}, s.req.QueueArn()))
	r.AddToPolicy(statement("Answer", []string{"sqs:SendMessage", "sqs:GetQueueUrl"}, s.resp.QueueArn()))
	if s.cfg.WebMax > 1 {
		// Several web instances: a request names its instance's reply
		// queue, which the worker answers to; it may only send there.
		r.AddToPolicy(statement("AnswerReplyQueues", []string{"sqs:SendMessage", "sqs:GetQueueUrl"}, s.replyQueues()))
	}
	r.AddToPolicy(statement("ReadInputs", []string{"s3:GetObject"}, s.in.ArnForObjects(jsii.String("*"))))
	r.AddToPolicy(statement("WriteOutputs", []string{"s3:PutObject"}, s.out.ArnForObjects(jsii.String("*"))))
	r.AddToPolicy(statement("RecordAnswers", []string{"dynamodb:PutItem"}, s.table.TableArn()))
	// A worker ends its own instance when idle; IAM cannot name "the
	// caller's instance" as a resource, so the bound is this fleet's.
	r.AddToPolicy(statementIf("EndOwnInstance", []string{"ec2:TerminateInstances"},
		map[string]any{"StringEquals": s.fleetTag("aws:ResourceTag/")}, s.ec2ARN("instance", "*")))
	// A worker asks whether its instance is in the warm pool, whose
	// members never end themselves (DescribeInstances has no resource
	// level permissions).
	r.AddToPolicy(statement("SeeWhetherPooled", []string{"ec2:DescribeInstances"}, jsii.String("*")))
	// A worker marks its instance ready, which is all it may tag.
	r.AddToPolicy(statementIf("MarkOwnInstanceReady", []string{"ec2:CreateTags"}, map[string]any{
		"StringEquals":              s.fleetTag("aws:ResourceTag/"),
		"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": []string{aws.TagReady}},
	}, s.ec2ARN("instance", "*")))

	modelEnv, files := s.modelAssets()
	files = append([]asset{s.binaryAsset("WorkerBinary", "./worker", "worker", s.cfg.WorkerArch)}, files...)
	idleShutdown := s.cfg.IdleShutdown
	if s.cfg.MinWorkers > 0 {
		// Workers kept warm would terminate themselves when idle, and the
		// scaler launch them again, every minute; with a floor the scaler
		// alone scales in, terminating idle workers above it.
		idleShutdown = "0"
	}
	env := s.storageEnv(map[string]string{
		"SURGE_BACKEND":       "aws",
		"SURGE_PREFIX":        s.cfg.Prefix,
		"SURGE_ORT_LIB":       "/opt/surge/lib/libonnxruntime.so.1",
		"SURGE_VISIBILITY":    strconv.Itoa(requestVisibility) + "s",
		"SURGE_MAX_RECEIVES":  "5",
		"SURGE_IDLE_SHUTDOWN": idleShutdown,
	})
	for k, v := range modelEnv {
		env[k] = v
	}
	s.modelName = assets.ModelName(env["SURGE_MODEL"])
	if s.cfg.Gallery != "" {
		s.modelName = assets.WithGallery(s.modelName)
	}
	script := s.bootScript(r, deploy.Service{Name: "worker", Env: env, EndOnFailure: true}, files...)

	s.workerSG = awsec2.NewSecurityGroup(s.stack, s.id("WorkerSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String("Surge workers: no inbound traffic"),
		AllowAllOutbound: jsii.Bool(true),
	})
	props := &awsec2.LaunchTemplateProps{
		LaunchTemplateName:                jsii.String(s.names.LaunchTemplate),
		MachineImage:                      amazonLinux(s.cfg.WorkerArch),
		InstanceType:                      awsec2.NewInstanceType(jsii.String(s.cfg.WorkerInstanceType)),
		Role:                              r,
		SecurityGroup:                     s.workerSG,
		UserData:                          awsec2.UserData_Custom(jsii.String(script)),
		RequireImdsv2:                     jsii.Bool(true),
		HttpPutResponseHopLimit:           jsii.Number(1),
		InstanceMetadataTags:              jsii.Bool(true),
		InstanceInitiatedShutdownBehavior: awsec2.InstanceInitiatedShutdownBehavior_TERMINATE,
		BlockDevices:                      encryptedRoot(),
	}
	if burstable(s.cfg.WorkerInstanceType) {
		// T3 and later launch unlimited by default, and a worker, busy
		// whenever it exists, would pay surplus credits all its life.
		// Standard caps the bill at the hourly price; having saved no
		// credits (T3 gets no launch credits), such a worker runs at the
		// type's baseline (docs/aws.md, Cost).
		props.CpuCredits = awsec2.CpuCredits_STANDARD
	}
	s.template = awsec2.NewLaunchTemplate(s.stack, s.id("WorkerTemplate"), props)
}

// amazonLinux is the latest Amazon Linux 2023 image for arch (amd64 or
// arm64), from its SSM parameter at deploy time.
func amazonLinux(arch string) awsec2.IMachineImage {
	cpu := awsec2.AmazonLinuxCpuType_X86_64
	if arch == "arm64" {
		cpu = awsec2.AmazonLinuxCpuType_ARM_64
	}
	return awsec2.MachineImage_LatestAmazonLinux2023(&awsec2.AmazonLinux2023ImageSsmParameterProps{CpuType: cpu})
}

// modelAssets are the model (or where to fetch it) and the gallery.
func (s *surge) modelAssets() (map[string]string, []asset) {
	env := map[string]string{}
	assets := []asset{s.fileAsset("OnnxRuntime", s.cfg.RuntimeLib, "/opt/surge/lib/libonnxruntime.so.1")}
	if s.cfg.ModelURL != "" {
		env["SURGE_MODEL"], env["SURGE_MODEL_SHA256"] = s.cfg.ModelURL, s.cfg.ModelSHA256
	} else {
		// The folder keeps its name, so a known model is checked against
		// its published digest on the instance too.
		dir := "/opt/surge/models/" + filepath.Base(s.cfg.ModelDir)
		env["SURGE_MODEL"] = dir + "/model.onnx"
		assets = append(assets,
			s.fileAsset("Model", filepath.Join(s.cfg.ModelDir, "model.onnx"), dir+"/model.onnx"),
			s.fileAsset("Labels", filepath.Join(s.cfg.ModelDir, "labels.txt"), dir+"/labels.txt"))
	}
	if s.cfg.Gallery != "" {
		env["SURGE_GALLERY"] = "/opt/surge/gallery/gallery.json"
		assets = append(assets, s.fileAsset("Gallery", s.cfg.Gallery, "/opt/surge/gallery/gallery.json"))
	}
	return env, assets
}

func encryptedRoot() *[]*awsec2.BlockDevice {
	return &[]*awsec2.BlockDevice{{
		DeviceName: jsii.String("/dev/xvda"),
		Volume:     awsec2.BlockDeviceVolume_Ebs(jsii.Number(8), &awsec2.EbsDeviceOptions{Encrypted: jsii.Bool(true), VolumeType: awsec2.EbsDeviceVolumeType_GP3}),
	}}
}

func statement(sid string, actions []string, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: &resources})
}

// statementIf is a statement that applies only under conditions (IAM's
// Condition element: operator → key → value).
func statementIf(sid string, actions []string, conditions map[string]any, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: &resources,
		Conditions: &conditions})
}

// fleetTag is the condition that a resource or request (by prefix,
// "aws:ResourceTag/" or "aws:RequestTag/") carries this fleet's tag.
func (s *surge) fleetTag(prefix string) map[string]any {
	return map[string]any{prefix + aws.TagFleet: s.names.Fleet}
}

// webRole is the web tier's instance role: what every web instance
// does, whether one or several.
func (s *surge) webRole() awsiam.Role {
	role := awsiam.NewRole(s.stack, s.id("WebRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String("Surge web tier: store uploads, queue requests, collect answers, show the fleet"),
	})
	role.AddToPolicy(statement("QueueRequests", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.req.QueueArn()))
	role.AddToPolicy(statement("CollectAnswers", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.resp.QueueArn()))
	// The web tier reads dead letters without deleting them, to answer
	// their uploads as failed (and count them in /status).
	role.AddToPolicy(statement("WatchDeadLetters", []string{"sqs:ReceiveMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.dlq.QueueArn()))
	role.AddToPolicy(statement("StoreUploads", []string{"s3:PutObject"}, s.in.ArnForObjects(jsii.String("*"))))
	role.AddToPolicy(statement("LookUpAnswers", []string{"dynamodb:GetItem"}, s.table.TableArn()))
	// DescribeInstances has no resource-level permissions. The boot also
	// reads its own instance's logical id from its tags with it.
	role.AddToPolicy(statement("ShowFleet", []string{"ec2:DescribeInstances"}, jsii.String("*")))
	// The instance tells the stack when the web tier answers (its
	// creation policy, below).
	role.AddToPolicy(statement("SignalReady", []string{"cloudformation:SignalResource"}, awscdk.Aws_STACK_ID()))
	return role
}

// webEnv is the web tier's environment, on any web instance.
func (s *surge) webEnv() map[string]string {
	return s.storageEnv(map[string]string{
		"SURGE_BACKEND": "aws", "SURGE_PREFIX": s.cfg.Prefix, "SURGE_MAX_WORKERS": strconv.Itoa(s.cfg.MaxWorkers), "SURGE_PORT": strconv.Itoa(events.WebPort),
		// A cached answer counts only if the workers' model gave it.
		"SURGE_MODEL_NAME": s.modelName,
	})
}

// webTier is the one web-instance the course's graders expect, or, with
// webMax above 1, a group of them behind a load balancer (webFleet).
func (s *surge) webTier() {
	role := s.webRole()
	if s.cfg.WebMax > 1 {
		s.webFleet(role)
		return
	}
	script := s.bootScript(role, deploy.Service{
		Name:  "webtier",
		Env:   s.webEnv(),
		Ready: &deploy.Readiness{Stack: *awscdk.Aws_STACK_NAME(), Path: "/healthz", PortEnv: "SURGE_PORT"},
	}, s.binaryAsset("WebBinary", "./webtier", "webtier", s.cfg.WebArch))
	sg := awsec2.NewSecurityGroup(s.stack, s.id("WebSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String(fmt.Sprintf("Surge web tier: port %d from the allowed clients only", events.WebPort)),
		AllowAllOutbound: jsii.Bool(true),
	})
	if s.cfg.AllowedCIDR != "" {
		sg.AddIngressRule(awsec2.Peer_Ipv4(jsii.String(s.cfg.AllowedCIDR)), awsec2.Port_Tcp(jsii.Number(events.WebPort)), jsii.String("Surge clients"), nil)
	} else {
		awscdk.Annotations_Of(sg).AddWarningV2(jsii.String("surge:closed"), jsii.String(fmt.Sprintf("no allowedCidr: port %d is closed to everyone; deploy with -c allowedCidr=<your address>/32", events.WebPort)))
	}
	props := &awsec2.InstanceProps{
		Vpc:                       s.vpc,
		VpcSubnets:                &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC},
		InstanceType:              awsec2.NewInstanceType(jsii.String(s.cfg.WebInstanceType)),
		MachineImage:              amazonLinux(s.cfg.WebArch),
		Role:                      role,
		SecurityGroup:             sg,
		UserData:                  awsec2.UserData_Custom(jsii.String(script)),
		HttpTokens:                awsec2.HttpTokens_REQUIRED,
		HttpPutResponseHopLimit:   jsii.Number(1),
		BlockDevices:              encryptedRoot(),
		UserDataCausesReplacement: jsii.Bool(true),
	}
	if burstable(s.cfg.WebInstanceType) {
		// The web tier mostly waits on the network and runs all the time,
		// saving credits for its bursts; standard means a long burst slows
		// it to the baseline instead of billing surplus credits.
		props.CreditSpecification = awsec2.CpuCredits_STANDARD
	}
	s.web = awsec2.NewInstance(s.stack, s.id("WebInstance"), props)
	// The subnet decides the zone. CDK would also name one, taken from the
	// VPC's zone list, which for an existing VPC is a placeholder that
	// need not be the subnet's zone: EC2 refuses such an instance.
	s.web.Instance().AddPropertyDeletionOverride(jsii.String("AvailabilityZone"))
	awscdk.Tags_Of(s.web).Add(jsii.String("Name"), jsii.String("web-instance"), nil)
	// The stack is complete only once the web tier answers /healthz: the
	// instance signals (its boot's readiness unit) or the deploy fails.
	s.web.Instance().CfnOptions().SetCreationPolicy(&awscdk.CfnCreationPolicy{
		ResourceSignal: &awscdk.CfnResourceSignal{Count: jsii.Number(1), Timeout: jsii.String("PT15M")},
	})
	// One address for the stack's life: an instance replaced by a
	// redeploy (new code, a newer image) takes it over once it answers
	// (the association, made after the instance's signal, is replaced).
	s.webAddress = awsec2.NewCfnEIP(s.stack, s.id("WebAddress"), &awsec2.CfnEIPProps{
		Domain: jsii.String("vpc"),
		Tags:   &[]*awscdk.CfnTag{{Key: jsii.String("Name"), Value: jsii.String("web-instance")}},
	})
	awsec2.NewCfnEIPAssociation(s.stack, s.id("WebAddressAssociation"), &awsec2.CfnEIPAssociationProps{
		AllocationId: s.webAddress.AttrAllocationId(),
		InstanceId:   s.web.InstanceId(),
	})
}

// functionRole is a Lambda function's log group (with the stack's
// retention, deleted with it) and its role, which may write there.
func (s *surge) functionRole(name, description string) (awsiam.Role, awslogs.LogGroup) {
	logs := awslogs.NewLogGroup(s.stack, s.id(name+"Logs"), &awslogs.LogGroupProps{
		Retention:     retention(s.cfg.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	role := awsiam.NewRole(s.stack, s.id(name+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(description),
	})
	role.AddToPolicy(statement("Log", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logs.LogGroupArn()))
	return role, logs
}

func (s *surge) scaler() {
	role, logs := s.functionRole("Scaler", "Surge scaler: read the backlog, launch and end this fleet's workers")
	role.AddToPolicy(statement("ReadBacklog", []string{"sqs:GetQueueAttributes"}, s.req.QueueArn()))
	// Neither Describe action has resource-level permissions. The launch
	// template's latest version says which warm-pool members a redeploy
	// made outdated.
	role.AddToPolicy(statement("SeeFleet", []string{"ec2:DescribeInstances", "ec2:DescribeLaunchTemplates"}, jsii.String("*")))
	// Launches come from the stack's launch template only
	// (ec2:LaunchTemplate on every resource of the request), with the
	// fleet's tag and the template's instance type. What the template
	// names, its image and security group, must be the template's
	// (ec2:IsLaunchTemplateResource), so no launch swaps in another
	// image; the subnet, which the scaler names itself to spread the fleet
	// over zones, must be one of the stack's.
	fromTemplate := map[string]any{"ec2:LaunchTemplate": s.ec2ARN("launch-template", *s.template.LaunchTemplateId())}
	instance := s.fleetTag("aws:RequestTag/")
	instance["ec2:InstanceType"] = s.cfg.WorkerInstanceType
	role.AddToPolicy(statementIf("LaunchFleetInstances", []string{"ec2:RunInstances"},
		map[string]any{"StringEquals": instance, "ArnLike": fromTemplate}, s.ec2ARN("instance", "*")))
	launchResources := []*string{s.ec2ARN("launch-template", *s.template.LaunchTemplateId()), s.ec2ARN("network-interface", "*"), s.ec2ARN("volume", "*")}
	for _, subnet := range s.subnets {
		launchResources = append(launchResources, s.ec2ARN("subnet", *subnet))
	}
	role.AddToPolicy(statementIf("LaunchFromTemplate", []string{"ec2:RunInstances"},
		map[string]any{"ArnLike": fromTemplate}, launchResources...))
	role.AddToPolicy(statementIf("LaunchTheTemplatesImageAndGroup", []string{"ec2:RunInstances"},
		map[string]any{"ArnLike": fromTemplate, "Bool": map[string]any{"ec2:IsLaunchTemplateResource": "true"}},
		s.ec2ARN("image", "*", ""), s.ec2ARN("security-group", *s.workerSG.SecurityGroupId())))
	role.AddToPolicy(statementIf("TagAtLaunch", []string{"ec2:CreateTags"},
		map[string]any{"StringEquals": map[string]any{"ec2:CreateAction": "RunInstances"}}, s.ec2ARN("instance", "*"), s.ec2ARN("volume", "*")))
	role.AddToPolicy(statementIf("EndFleetInstances", []string{"ec2:TerminateInstances"},
		map[string]any{"StringEquals": s.fleetTag("aws:ResourceTag/")}, s.ec2ARN("instance", "*")))
	// The warm pool: drained instances are stopped into it, and started
	// again under a fleet name in place of a launch, their readiness
	// cleared. Granted whatever poolSize is, so that changing it changes
	// only the scaler's environment; all of it bound to the fleet's tag.
	role.AddToPolicy(statementIf("StopAndStartFleetInstances", []string{"ec2:StopInstances", "ec2:StartInstances"},
		map[string]any{"StringEquals": s.fleetTag("aws:ResourceTag/")}, s.ec2ARN("instance", "*")))
	role.AddToPolicy(statementIf("NameAndPoolFleetInstances", []string{"ec2:CreateTags"}, map[string]any{
		"StringEquals":              s.fleetTag("aws:ResourceTag/"),
		"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": []string{"Name", aws.TagPool}},
	}, s.ec2ARN("instance", "*")))
	role.AddToPolicy(statementIf("ClearFleetReadiness", []string{"ec2:DeleteTags"}, map[string]any{
		"StringEquals":              s.fleetTag("aws:ResourceTag/"),
		"ForAllValues:StringEquals": map[string]any{"aws:TagKeys": []string{aws.TagReady}},
	}, s.ec2ARN("instance", "*")))
	role.AddToPolicy(statementIf("HandWorkersTheirRole", []string{"iam:PassRole"},
		map[string]any{"StringEquals": map[string]any{"iam:PassedToService": "ec2.amazonaws.com"}}, s.workerRole.RoleArn()))

	var reserved *float64
	if s.cfg.ScalerReservedConcurrency > 0 {
		reserved = jsii.Number(float64(s.cfg.ScalerReservedConcurrency))
	}
	s.scalerFn = s.goFunction("Scaler", "./lambdas/scaler", scalerHandler, &awslambda.FunctionProps{
		Description: jsii.String("Sizes the Surge worker fleet to the request backlog"),
		Role:        role,
		LogGroup:    logs,
		// Each invocation reconciles for the whole of its minute.
		Timeout: awscdk.Duration_Seconds(jsii.Number(scalerTimeout)),
		// EventBridge invokes it asynchronously, and Lambda would retry
		// an invocation that failed or timed out a minute or two later,
		// and a throttled one for up to 6 hours: by then its minute is
		// another invocation's, whose decisions it could only duplicate
		// under other client tokens. The next minute's event is the
		// retry. (60 s is the least age Lambda takes.)
		RetryAttempts: jsii.Number(0),
		MaxEventAge:   awscdk.Duration_Seconds(jsii.Number(60)),
		// Opt-in only (see Config): overlapping invocations are safe, since
		// duplicates of one scheduled event share their launches' client
		// tokens and different minutes' decisions do not overlap.
		ReservedConcurrentExecutions: reserved,
		Environment: &map[string]*string{
			"SURGE_REQUEST_QUEUE_URL": s.req.QueueUrl(),
			"SURGE_LAUNCH_TEMPLATE":   jsii.String(s.names.LaunchTemplate),
			"SURGE_FLEET":             jsii.String(s.names.Fleet),
			"SURGE_MAX_WORKERS":       jsii.String(strconv.Itoa(s.cfg.MaxWorkers)),
			"SURGE_MIN_WORKERS":       jsii.String(strconv.Itoa(s.cfg.MinWorkers)),
			"SURGE_SUBNETS":           awscdk.Fn_Join(jsii.String(","), &s.subnets),
			"SURGE_TICK":              jsii.String(s.cfg.ScalerTick),
			"SURGE_WINDOW":            jsii.String(scalerWindow),
			"SURGE_BOOT_DEADLINE":     jsii.String(s.cfg.BootDeadline),
			"SURGE_POOL_SIZE":         jsii.String(strconv.Itoa(s.cfg.PoolSize)),
		},
	})
	if s.cfg.WebMax > 1 {
		s.sweeper(role)
	}
	// The scaler checks before each launch that it has not been stopped
	// (by the stack's destroy, below). A policy of its own, not the role's
	// default one, since it names the function, which depends on the
	// role's default policy.
	awsiam.NewPolicy(s.stack, s.id("ScalerSelfCheck"), &awsiam.PolicyProps{
		Roles:      &[]awsiam.IRole{role},
		Statements: &[]awsiam.PolicyStatement{statement("SeeWhetherStopped", []string{"lambda:GetFunctionConcurrency"}, s.scalerFn.FunctionArn())},
	})
	s.schedule = awsevents.NewRule(s.stack, s.id("ScalerSchedule"), &awsevents.RuleProps{
		Description: jsii.String("Runs the Surge scaler every minute"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1))),
		Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(s.scalerFn, nil)},
	})
}

// sweeper has the scaler, with several web instances, tidy their reply
// queues: list them (ListQueues cannot be bound to a resource), move what
// the queue of an instance that is gone holds to the shared response
// queue, and delete such a queue once it has stayed empty long enough,
// noting since when in a tag of its own.
func (s *surge) sweeper(role awsiam.Role) {
	s.scalerFn.AddEnvironment(jsii.String("SURGE_RESPONSE_QUEUE_URL"), s.resp.QueueUrl(), nil)
	role.AddToPolicy(statement("FindReplyQueues", []string{"sqs:ListQueues"}, jsii.String("*")))
	role.AddToPolicy(statement("SweepReplyQueues", []string{
		"sqs:ListQueueTags", "sqs:TagQueue", "sqs:UntagQueue", "sqs:DeleteQueue",
		"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
	}, s.replyQueues()))
	role.AddToPolicy(statement("PassOnAnswers", []string{"sqs:SendMessage"}, s.resp.QueueArn()))
	// The reply queues' pattern takes in the shared response queue's
	// name: whatever the sweeper does, that queue stays.
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid: jsii.String("KeepSharedResponseQueue"), Effect: awsiam.Effect_DENY,
		Actions: jsii.Strings("sqs:DeleteQueue"), Resources: &[]*string{s.resp.QueueArn()},
	}))
}

// goFunction is a Lambda function built from one of the repository's
// commands by a local `go build` for arm64 (no Docker).
func (s *surge) goFunction(id, pkg, handler string, props *awslambda.FunctionProps) awslambda.Function {
	b, hash := bundling(goBuild{repo: s.cfg.Repo, pkg: pkg, binary: "bootstrap", goos: "linux", goarch: "arm64", tags: "lambda.norpc"}, awscdk.BundlingOutput_NOT_ARCHIVED)
	props.Runtime = awslambda.Runtime_PROVIDED_AL2023()
	props.Architecture = awslambda.Architecture_ARM_64()
	props.Handler = jsii.String(handler)
	props.MemorySize = jsii.Number(128)
	props.Code = awslambda.Code_FromAsset(jsii.String(filepath.Join(s.cfg.Repo, strings.TrimPrefix(pkg, "./"))), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_CUSTOM,
		AssetHash:     hash,
		Bundling:      b,
	})
	return awslambda.NewFunction(s.stack, s.id(id), props)
}

// hooks is the stack's own custom resource: on create it locks down the
// new VPC's default security group; on delete, before anything it depends
// on goes, it stops the scaler, terminates every worker the scaler
// launched (they are not the stack's resources, and they would hold the
// security group and subnets), and empties the buckets that go with the
// stack.
func (s *surge) hooks() {
	role, logs := s.functionRole("StackHooks", "Surge stack hooks: lock the default security group; on destroy stop the scaler, end the fleet, empty the buckets")
	role.AddToPolicy(statement("SeeFleetAndGroups", []string{"ec2:DescribeInstances", "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules"}, jsii.String("*")))
	role.AddToPolicy(statementIf("EndFleetInstances", []string{"ec2:TerminateInstances"},
		map[string]any{"StringEquals": s.fleetTag("aws:ResourceTag/")}, s.ec2ARN("instance", "*")))
	role.AddToPolicy(statement("StopScaler", []string{"lambda:PutFunctionConcurrency"}, s.scalerFn.FunctionArn()))
	env := map[string]*string{
		"SURGE_FLEET":           jsii.String(s.names.Fleet),
		"SURGE_SCALER_FUNCTION": s.scalerFn.FunctionName(),
		// The scaler checks before every launch whether it was stopped,
		// and an invocation under way at the stop launches nothing after
		// its window's end: the hook looks for the fleet's last instances
		// after that, whatever went wrong with the check.
		"SURGE_SCALER_WINDOW": jsii.String(scalerWindow),
	}
	if s.newVpc != nil {
		// Only the VPC this stack made: an existing VPC's default group
		// is its owner's business.
		env["SURGE_VPC_ID"] = s.newVpc.VpcId()
		// Rules are revoked by id; the group's ARN is what bounds it.
		role.AddToPolicy(statement("LockDefaultSecurityGroup", []string{"ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"},
			s.ec2ARN("security-group", *s.newVpc.VpcDefaultSecurityGroup()), s.ec2ARN("security-group-rule", "*")))
	}
	if !s.cfg.RetainData {
		env["SURGE_EMPTY_BUCKETS"] = awscdk.Fn_Join(jsii.String(","), &[]*string{s.in.BucketName(), s.out.BucketName()})
		role.AddToPolicy(statement("ListBuckets", []string{"s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"}, s.in.BucketArn(), s.out.BucketArn()))
		role.AddToPolicy(statement("EmptyBuckets", []string{"s3:DeleteObject", "s3:DeleteObjectVersion"},
			s.in.ArnForObjects(jsii.String("*")), s.out.ArnForObjects(jsii.String("*"))))
	}
	fn := s.goFunction("StackHooksFunction", "./lambdas/stackhooks", hooksHandler, &awslambda.FunctionProps{
		Description: jsii.String("Surge stack hooks: default security group on create; fleet, scaler and buckets on delete"),
		Role:        role,
		LogGroup:    logs,
		Timeout:     awscdk.Duration_Minutes(jsii.Number(15)),
		Environment: &env,
	})
	hook := awscdk.NewCustomResource(s.stack, s.id("Hooks"), &awscdk.CustomResourceProps{
		ServiceToken: fn.FunctionArn(),
		ResourceType: jsii.String("Custom::SurgeStackHooks"),
		// A function that dies without answering fails the stack after
		// this, not CloudFormation's default hour.
		ServiceTimeout: awscdk.Duration_Seconds(jsii.Number(960)),
	})
	// Created last and so deleted first: the fleet ends while the network,
	// the security groups, the launch template, the worker role and the
	// buckets and table it uses are all still there.
	deps := []constructs.IConstruct{s.vpc, s.workerSG, s.template, s.workerRole, s.in, s.out, s.table, s.scalerFn, s.schedule, s.logs, s.emfLogs}
	if s.web != nil {
		deps = append(deps, s.web)
	} else {
		deps = append(deps, s.webGroup)
	}
	for _, c := range deps {
		hook.Node().AddDependency(c)
	}
}

func (s *surge) outputs() {
	out := func(id string, value *string, desc string) {
		awscdk.NewCfnOutput(s.stack, s.id(id), &awscdk.CfnOutputProps{Value: value, Description: jsii.String(desc)})
	}
	if s.web != nil {
		out("WebUrl", jsii.String("http://"+*s.webAddress.Ref()+":"+strconv.Itoa(events.WebPort)+"/"), "POST images here")
		out("WebInstanceId", s.web.InstanceId(), "the web tier's instance (aws ssm start-session --target <id>)")
	} else {
		out("WebUrl", jsii.String("http://"+*s.webLB.LoadBalancerDnsName()+"/"), "POST images here: the load balancer in front of the web instances")
		out("WebGroupName", s.webGroup.AutoScalingGroupName(), "the web instances' Auto Scaling group (aws autoscaling describe-auto-scaling-groups)")
	}
	out("RequestQueueName", s.req.QueueName(), "request queue")
	out("ResponseQueueName", s.resp.QueueName(), "response queue")
	out("DeadLetterQueueName", s.dlq.QueueName(), "requests that failed for good")
	out("InputBucketName", s.in.BucketName(), "uploaded images")
	out("OutputBucketName", s.out.BucketName(), "labels by stem")
	out("ResultsTableName", s.table.TableName(), "answers by file name")
	out("InstanceLogGroup", s.logs.LogGroupName(), "the instances' service and boot logs, a stream each per instance")
	out("ScalerFunction", s.scalerFn.FunctionName(), "the scaler Lambda (its log group holds every decision)")
	out("MetricLogGroup", s.emfLogs.LogGroupName(), "the web tier's and workers' embedded-metric-format lines, a stream per instance")
	out("DashboardUrl", jsii.String("https://console.aws.amazon.com/cloudwatch/home?region="+*awscdk.Aws_REGION()+"#dashboards/dashboard/"+s.cfg.Prefix+"-"+*awscdk.Aws_REGION()), "the CloudWatch dashboard")
}

// retention rounds days up to a period CloudWatch Logs offers.
func retention(days int) awslogs.RetentionDays {
	for _, r := range []struct {
		days int
		ret  awslogs.RetentionDays
	}{
		{1, awslogs.RetentionDays_ONE_DAY}, {3, awslogs.RetentionDays_THREE_DAYS}, {5, awslogs.RetentionDays_FIVE_DAYS},
		{7, awslogs.RetentionDays_ONE_WEEK}, {14, awslogs.RetentionDays_TWO_WEEKS}, {30, awslogs.RetentionDays_ONE_MONTH},
		{60, awslogs.RetentionDays_TWO_MONTHS}, {90, awslogs.RetentionDays_THREE_MONTHS}, {180, awslogs.RetentionDays_SIX_MONTHS},
	} {
		if days <= r.days {
			return r.ret
		}
	}
	return awslogs.RetentionDays_ONE_YEAR
}
