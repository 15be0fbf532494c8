package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
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

	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/userdata"
)

// Request visibility timeout: the worker extends it every third while it
// works, so it only bounds how soon a lost worker's request comes back;
// classification takes well under a second.
const requestVisibility = 30

// NewSurgeStack defines the whole deployment.
func NewSurgeStack(scope constructs.Construct, id string, cfg Config, props *awscdk.StackProps) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, props)
	names := backend.NamesFor(cfg.Prefix)
	s := &surge{stack: stack, cfg: cfg, names: names}

	s.network()
	s.queuesAndBuckets()
	s.workers()
	s.webTier()
	s.scaler()
	return stack
}

type surge struct {
	stack awscdk.Stack
	cfg   Config
	names backend.Names

	vpc            awsec2.IVpc
	subnets        []*string
	dlq, req, resp awssqs.Queue
	in, out        awss3.Bucket
	workerRole     awsiam.Role
	workerSG       awsec2.SecurityGroup
	template       awsec2.LaunchTemplate
}

func (s *surge) id(name string) *string { return jsii.String(name) }

// network is a new VPC with public subnets only (no NAT gateway to pay
// for), or the one named in context.
func (s *surge) network() {
	if s.cfg.VpcID != "" {
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
		// Restricting the default security group takes a custom-resource
		// Lambda; nothing here uses that group.
		RestrictDefaultSecurityGroup: jsii.Bool(false),
	})
	s.vpc = vpc
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
		MaxMessageSizeBytes: jsii.Number(1024),
		VisibilityTimeout:   awscdk.Duration_Seconds(jsii.Number(requestVisibility)),
		DeadLetterQueue:     &awssqs.DeadLetterQueue{Queue: s.dlq, MaxReceiveCount: jsii.Number(5)},
		Encryption:          awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:          jsii.Bool(true),
	})
	s.resp = awssqs.NewQueue(s.stack, s.id("ResponseQueue"), &awssqs.QueueProps{
		QueueName:  jsii.String(s.names.ResponseQueue),
		Encryption: awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL: jsii.Bool(true),
	})
	bucket := func(id, name string) awss3.Bucket {
		removal := awscdk.RemovalPolicy_RETAIN
		if s.cfg.AutoDelete {
			removal = awscdk.RemovalPolicy_DESTROY
		}
		return awss3.NewBucket(s.stack, s.id(id), &awss3.BucketProps{
			BucketName:        jsii.String(name),
			BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
			Encryption:        awss3.BucketEncryption_S3_MANAGED,
			EnforceSSL:        jsii.Bool(true),
			ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
			RemovalPolicy:     removal,
			AutoDeleteObjects: jsii.Bool(s.cfg.AutoDelete),
		})
	}
	s.in = bucket("InputBucket", s.names.InputBucket)
	s.out = bucket("OutputBucket", s.names.OutputBucket)
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

func (s *surge) binaryAsset(id, pkg, name string) asset {
	b, hash := bundling(goBuild{repo: s.cfg.Repo, pkg: pkg, binary: name, goos: "linux", goarch: "amd64", cgo: true}, awscdk.BundlingOutput_SINGLE_FILE)
	return asset{a: awss3assets.NewAsset(s.stack, s.id(id), &awss3assets.AssetProps{
		Path:          jsii.String(filepath.Join(s.cfg.Repo, strings.TrimPrefix(pkg, "./"))),
		AssetHashType: awscdk.AssetHashType_CUSTOM,
		AssetHash:     hash,
		Bundling:      b,
	}), dest: "/opt/surge/bin/" + name, mode: "0755"}
}

// install downloads assets in user data, and lets role read exactly them.
func (s *surge) install(role awsiam.Role, assets ...asset) []string {
	cmds := []string{"install -d -m 0755 /opt/surge/lib /opt/surge/models /opt/surge/gallery"}
	var objects []*string
	for _, a := range assets {
		dir := a.dest[:strings.LastIndexByte(a.dest, '/')]
		cmds = append(cmds, fmt.Sprintf("install -d -m 0755 %s && aws s3 cp --only-show-errors --region %s s3://%s/%s %s && chmod %s %s",
			dir, *awscdk.Aws_REGION(), *a.a.S3BucketName(), *a.a.S3ObjectKey(), a.dest, a.mode, a.dest))
		objects = append(objects, a.a.Bucket().ArnForObjects(a.a.S3ObjectKey()))
	}
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("DownloadOwnAssets"),
		Actions:   jsii.Strings("s3:GetObject"),
		Resources: &objects,
	}))
	return cmds
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

func (s *surge) workers() {
	s.workerRole = awsiam.NewRole(s.stack, s.id("WorkerRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String("Surge workers: take requests, read inputs, write outputs and answers, end their own instance"),
	})
	r := s.workerRole
	r.AddToPolicy(statement("TakeRequests", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"}, s.req.QueueArn()))
	r.AddToPolicy(statement("Answer", []string{"sqs:SendMessage", "sqs:GetQueueUrl"}, s.resp.QueueArn()))
	r.AddToPolicy(statement("ReadInputs", []string{"s3:GetObject"}, s.in.ArnForObjects(jsii.String("*"))))
	r.AddToPolicy(statement("WriteOutputs", []string{"s3:PutObject"}, s.out.ArnForObjects(jsii.String("*"))))
	// A worker ends its own instance when idle; IAM cannot name "the
	// caller's instance" as a resource, so the bound is this fleet's.
	r.AddToPolicy(statementWhere("EndOwnInstance", []string{"ec2:TerminateInstances"},
		s.fleetTag("aws:ResourceTag/"), s.ec2ARN("instance", "*")))

	modelEnv, assets := s.modelAssets()
	assets = append([]asset{s.binaryAsset("WorkerBinary", "./worker", "worker")}, assets...)
	env := map[string]string{
		"SURGE_BACKEND":       "aws",
		"SURGE_PREFIX":        s.cfg.Prefix,
		"SURGE_ORT_LIB":       "/opt/surge/lib/libonnxruntime.so.1",
		"SURGE_VISIBILITY":    strconv.Itoa(requestVisibility) + "s",
		"SURGE_MAX_RECEIVES":  "5",
		"SURGE_IDLE_SHUTDOWN": s.cfg.IdleShutdown,
	}
	for k, v := range modelEnv {
		env[k] = v
	}
	script, err := userdata.Render(userdata.Service{Name: "worker", Env: env, Install: s.install(r, assets...)})
	if err != nil {
		panic(err)
	}

	s.workerSG = awsec2.NewSecurityGroup(s.stack, s.id("WorkerSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String("Surge workers: no inbound traffic"),
		AllowAllOutbound: jsii.Bool(true),
	})
	s.template = awsec2.NewLaunchTemplate(s.stack, s.id("WorkerTemplate"), &awsec2.LaunchTemplateProps{
		LaunchTemplateName:                jsii.String(s.names.LaunchTemplate),
		MachineImage:                      awsec2.MachineImage_LatestAmazonLinux2023(&awsec2.AmazonLinux2023ImageSsmParameterProps{CpuType: awsec2.AmazonLinuxCpuType_X86_64}),
		InstanceType:                      awsec2.NewInstanceType(jsii.String(s.cfg.WorkerInstanceType)),
		Role:                              r,
		SecurityGroup:                     s.workerSG,
		UserData:                          awsec2.UserData_Custom(jsii.String(script)),
		RequireImdsv2:                     jsii.Bool(true),
		HttpPutResponseHopLimit:           jsii.Number(1),
		InstanceMetadataTags:              jsii.Bool(true),
		InstanceInitiatedShutdownBehavior: awsec2.InstanceInitiatedShutdownBehavior_TERMINATE,
		BlockDevices:                      encryptedRoot(),
	})
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

// statementWhere is a statement that applies only where every condition
// key equals its value (StringEquals).
func statementWhere(sid string, actions []string, equals map[string]any, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{Sid: jsii.String(sid), Actions: jsii.Strings(actions...), Resources: &resources,
		Conditions: &map[string]any{"StringEquals": equals}})
}

// fleetTag is the condition that a resource or request (by prefix,
// "aws:ResourceTag/" or "aws:RequestTag/") carries this fleet's tag.
func (s *surge) fleetTag(prefix string) map[string]any {
	return map[string]any{prefix + ec2fleet.TagFleet: s.names.Fleet}
}

func (s *surge) webTier() {
	role := awsiam.NewRole(s.stack, s.id("WebRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String("Surge web tier: store uploads, queue requests, collect answers, show the fleet"),
	})
	role.AddToPolicy(statement("QueueRequests", []string{"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.req.QueueArn()))
	role.AddToPolicy(statement("CollectAnswers", []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.resp.QueueArn()))
	role.AddToPolicy(statement("CountDeadLetters", []string{"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}, s.dlq.QueueArn()))
	role.AddToPolicy(statement("StoreUploads", []string{"s3:PutObject"}, s.in.ArnForObjects(jsii.String("*"))))
	// DescribeInstances has no resource-level permissions.
	role.AddToPolicy(statement("ShowFleet", []string{"ec2:DescribeInstances"}, jsii.String("*")))

	script, err := userdata.Render(userdata.Service{
		Name:    "webtier",
		Env:     map[string]string{"SURGE_BACKEND": "aws", "SURGE_PREFIX": s.cfg.Prefix, "SURGE_MAX_WORKERS": strconv.Itoa(s.cfg.MaxWorkers), "PORT": "8000"},
		Install: s.install(role, s.binaryAsset("WebBinary", "./webtier", "webtier")),
	})
	if err != nil {
		panic(err)
	}
	sg := awsec2.NewSecurityGroup(s.stack, s.id("WebSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String("Surge web tier: port 8000 from the allowed clients only"),
		AllowAllOutbound: jsii.Bool(true),
	})
	if s.cfg.AllowedCIDR != "" {
		sg.AddIngressRule(awsec2.Peer_Ipv4(jsii.String(s.cfg.AllowedCIDR)), awsec2.Port_Tcp(jsii.Number(8000)), jsii.String("Surge clients"), nil)
	} else {
		awscdk.Annotations_Of(sg).AddWarningV2(jsii.String("surge:closed"), jsii.String("no allowedCidr: port 8000 is closed to everyone; deploy with -c allowedCidr=<your address>/32"))
	}
	web := awsec2.NewInstance(s.stack, s.id("WebInstance"), &awsec2.InstanceProps{
		Vpc:                       s.vpc,
		VpcSubnets:                &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC},
		InstanceType:              awsec2.NewInstanceType(jsii.String(s.cfg.WebInstanceType)),
		MachineImage:              awsec2.MachineImage_LatestAmazonLinux2023(&awsec2.AmazonLinux2023ImageSsmParameterProps{CpuType: awsec2.AmazonLinuxCpuType_X86_64}),
		Role:                      role,
		SecurityGroup:             sg,
		UserData:                  awsec2.UserData_Custom(jsii.String(script)),
		RequireImdsv2:             jsii.Bool(true),
		BlockDevices:              encryptedRoot(),
		UserDataCausesReplacement: jsii.Bool(true),
	})
	awscdk.Tags_Of(web).Add(jsii.String("Name"), jsii.String("web-instance"), nil)

	out := func(id, value, desc string) {
		awscdk.NewCfnOutput(s.stack, s.id(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(desc)})
	}
	out("WebUrl", "http://"+*web.InstancePublicDnsName()+":8000/", "POST images here")
	out("RequestQueueName", *s.req.QueueName(), "request queue")
	out("ResponseQueueName", *s.resp.QueueName(), "response queue")
	out("DeadLetterQueueName", *s.dlq.QueueName(), "requests that failed for good")
	out("InputBucketName", *s.in.BucketName(), "uploaded images")
	out("OutputBucketName", *s.out.BucketName(), "labels by stem")
}

func (s *surge) scaler() {
	logs := awslogs.NewLogGroup(s.stack, s.id("ScalerLogs"), &awslogs.LogGroupProps{
		Retention:     retention(s.cfg.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	role := awsiam.NewRole(s.stack, s.id("ScalerRole"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("Surge scaler: read the backlog, launch and end this fleet's workers"),
	})
	role.AddToPolicy(statement("Log", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logs.LogGroupArn()))
	role.AddToPolicy(statement("ReadBacklog", []string{"sqs:GetQueueAttributes"}, s.req.QueueArn()))
	role.AddToPolicy(statement("SeeFleet", []string{"ec2:DescribeInstances"}, jsii.String("*")))
	role.AddToPolicy(statementWhere("LaunchFleetInstances", []string{"ec2:RunInstances"},
		s.fleetTag("aws:RequestTag/"), s.ec2ARN("instance", "*")))
	role.AddToPolicy(statement("LaunchFromTemplate", []string{"ec2:RunInstances"},
		s.ec2ARN("launch-template", *s.template.LaunchTemplateId()),
		s.ec2ARN("subnet", "*"), s.ec2ARN("security-group", *s.workerSG.SecurityGroupId()),
		s.ec2ARN("network-interface", "*"), s.ec2ARN("volume", "*"),
		s.ec2ARN("image", "*", "")))
	role.AddToPolicy(statementWhere("TagAtLaunch", []string{"ec2:CreateTags"},
		map[string]any{"ec2:CreateAction": "RunInstances"}, s.ec2ARN("instance", "*"), s.ec2ARN("volume", "*")))
	role.AddToPolicy(statementWhere("EndFleetInstances", []string{"ec2:TerminateInstances"},
		s.fleetTag("aws:ResourceTag/"), s.ec2ARN("instance", "*")))
	role.AddToPolicy(statementWhere("HandWorkersTheirRole", []string{"iam:PassRole"},
		map[string]any{"iam:PassedToService": "ec2.amazonaws.com"}, s.workerRole.RoleArn()))

	b, hash := bundling(goBuild{repo: s.cfg.Repo, pkg: "./lambdas/scaler", binary: "bootstrap", goos: "linux", goarch: "arm64", tags: "lambda.norpc"}, awscdk.BundlingOutput_NOT_ARCHIVED)
	fn := awslambda.NewFunction(s.stack, s.id("Scaler"), &awslambda.FunctionProps{
		Description:  jsii.String("Sizes the Surge worker fleet to the request backlog"),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("bootstrap"),
		Code: awslambda.Code_FromAsset(jsii.String(filepath.Join(s.cfg.Repo, "lambdas", "scaler")), &awss3assets.AssetOptions{
			AssetHashType: awscdk.AssetHashType_CUSTOM,
			AssetHash:     hash,
			Bundling:      b,
		}),
		Role:       role,
		LogGroup:   logs,
		MemorySize: jsii.Number(128),
		// Each invocation reconciles for 55 s of its minute.
		Timeout: awscdk.Duration_Seconds(jsii.Number(60)),
		// One scaler at a time; overlapping launches are idempotent anyway
		// (client tokens), this keeps them from happening.
		ReservedConcurrentExecutions: jsii.Number(1),
		Environment: &map[string]*string{
			"SURGE_REQUEST_QUEUE_URL": s.req.QueueUrl(),
			"SURGE_LAUNCH_TEMPLATE":   jsii.String(s.names.LaunchTemplate),
			"SURGE_FLEET":             jsii.String(s.names.Fleet),
			"SURGE_MAX_WORKERS":       jsii.String(strconv.Itoa(s.cfg.MaxWorkers)),
			"SURGE_SUBNETS":           awscdk.Fn_Join(jsii.String(","), &s.subnets),
			"SURGE_TICK":              jsii.String(s.cfg.ScalerTick),
		},
	})
	awsevents.NewRule(s.stack, s.id("ScalerSchedule"), &awsevents.RuleProps{
		Description: jsii.String("Runs the Surge scaler every minute"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1))),
		Targets:     &[]awsevents.IRuleTarget{awseventstargets.NewLambdaFunction(fn, nil)},
	})
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
