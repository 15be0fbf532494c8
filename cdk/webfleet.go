package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsautoscaling"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awselasticloadbalancingv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/deploy"
)

// The web group's timings. The web tier holds an upload for up to its
// -result-timeout (5 minutes) after the body has come, which may itself
// take up to 2 minutes (docs/protocol.md): a request can live 7 minutes,
// 5 of them without a byte on the connection.
const (
	// albIdleTimeout is how long the load balancer keeps a connection on
	// which no byte moves (idle_timeout.timeout_seconds; its default of
	// 60 s would cut every upload held longer): above the 5 minutes an
	// upload is held without a byte.
	albIdleTimeout = 330 * time.Second
	// webKeepAlive is the web server's idle keep-alive, above the load
	// balancer's idle timeout, as ELB asks of targets: a target that
	// closes an idle connection first can have the balancer send a
	// request on it as it closes, which the client sees as a 502.
	webKeepAlive = 360 * time.Second
	// webDeregistrationDelay is how long a web instance that leaves the
	// group (scale-in, a rolling update) still answers what it holds
	// before the group terminates it (deregistration_delay.timeout_seconds,
	// 0-3600): the 7 minutes a request can live, and 30 s more for its
	// answer to be written. An instance that holds nothing leaves at once.
	webDeregistrationDelay = 450 * time.Second
	// Health checks of /readyz: a new instance takes traffic 2 checks
	// (20 s) after it answers; one that stops being ready (its queue or
	// bucket unreachable, its disk full) leaves rotation after 3 (30 s).
	webHealthInterval  = 10 * time.Second
	webHealthTimeout   = 5 * time.Second
	webHealthyChecks   = 2
	webUnhealthyChecks = 3
	// openUploadsTarget is the mean number of uploads each web instance
	// should hold, which the group's target tracking keeps it near. An
	// instance serves the course's clients, 100 uploads at once, within
	// their targets (docs/benchmark.md, the 100-face tests), and 100
	// photos of 2.5 MB (a 12 MP JPEG) arriving at once fill its 256 MB
	// upload budget (docs/protocol.md), past which further bytes wait for
	// memory: so a group past 100 per instance grows before uploads
	// start to wait. An upload held after it is stored costs only its
	// connection and goroutine.
	openUploadsTarget = 100
	// webWarmup is how long a new instance's metrics are left out of the
	// group's: its boot (downloads, start, first health checks) takes
	// one to three minutes.
	webWarmup = 3 * time.Minute
	// albPort is where the load balancer listens: plain HTTP, as the web
	// tier speaks (docs/aws.md: put TLS in front for anything public).
	albPort = 80
)

// webGroupName is the web Auto Scaling group's name; the web tier's
// metrics carry it as their Fleet, so its scaling policy reads this
// group's instances only.
func (s *surge) webGroupName() string { return s.cfg.Prefix + "-web" }

// replyQueues is the ARN pattern of the web instances' reply queues,
// <prefix>-resp-<instance id> (and the shared <prefix>-resp-queue).
func (s *surge) replyQueues() *string {
	return s.stack.FormatArn(&awscdk.ArnComponents{
		Service: jsii.String("sqs"), Resource: jsii.String(s.names.ReplyQueuePrefix + "*"), ArnFormat: awscdk.ArnFormat_NO_RESOURCE_NAME,
	})
}

// webFleet is the web tier scaled out: an internet-facing Application
// Load Balancer (port 80, open to allowedCidr) in front of an Auto
// Scaling group of webMin (2) to webMax web instances across two zones,
// launched from a launch template, which the balancer's health checks of
// /readyz send traffic to, and which grows and shrinks to keep the
// uploads each instance holds near openUploadsTarget. Each instance reads a reply
// queue of its own (<prefix>-resp-<instance id>), so none takes another's
// results.
func (s *surge) webFleet(role awsiam.Role) {
	group := s.webGroupName()
	// Each instance creates, reads and tags its reply queue at start,
	// passes on to the others' what reaches the shared queue, and marks in
	// the table the uploads it has queued, so that an upload sent again
	// to another instance waits for that answer.
	role.AddToPolicy(statement("ReplyQueues", []string{
		"sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:TagQueue",
	}, s.replyQueues()))
	role.AddToPolicy(statement("MarkPending", []string{"dynamodb:PutItem"}, s.table.TableArn()))

	env := s.webEnv()
	// The instance's own id (IMDSv2) names its reply queue.
	env["SURGE_INSTANCE_ID"] = "imds"
	env["SURGE_KEEP_ALIVE"] = webKeepAlive.String()
	env["SURGE_FLEET"] = group
	script := s.bootScript(role, deploy.Service{
		Name: "webtier",
		Env:  env,
		// Each instance signals the group's creation policy, by the
		// aws:cloudformation:logical-id tag CloudFormation gives the
		// group's instances.
		Ready: &deploy.Readiness{Stack: *awscdk.Aws_STACK_NAME(), Path: "/readyz", PortEnv: "SURGE_PORT"},
	}, s.binaryAsset("WebBinary", "./webtier", "webtier", s.cfg.WebArch))

	albSG := awsec2.NewSecurityGroup(s.stack, s.id("WebLoadBalancerSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String(fmt.Sprintf("Surge load balancer: port %d from the allowed clients only", albPort)),
		AllowAllOutbound: jsii.Bool(false),
	})
	if s.cfg.AllowedCIDR != "" {
		albSG.AddIngressRule(awsec2.Peer_Ipv4(jsii.String(s.cfg.AllowedCIDR)), awsec2.Port_Tcp(jsii.Number(albPort)), jsii.String("Surge clients"), nil)
	} else {
		awscdk.Annotations_Of(albSG).AddWarningV2(jsii.String("surge:closed"), jsii.String(fmt.Sprintf("no allowedCidr: the load balancer's port %d is closed to everyone; deploy with -c allowedCidr=<your address>/32", albPort)))
	}
	webSG := awsec2.NewSecurityGroup(s.stack, s.id("WebSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              s.vpc,
		Description:      jsii.String(fmt.Sprintf("Surge web tier: port %d from the load balancer only", events.WebPort)),
		AllowAllOutbound: jsii.Bool(true),
	})
	// Traffic and health checks, from the balancer alone.
	webSG.Connections().AllowFrom(albSG, awsec2.Port_Tcp(jsii.Number(events.WebPort)), jsii.String("Surge load balancer"))

	props := &awsec2.LaunchTemplateProps{
		MachineImage:            amazonLinux(s.cfg.WebArch),
		InstanceType:            awsec2.NewInstanceType(jsii.String(s.cfg.WebInstanceType)),
		Role:                    role,
		SecurityGroup:           webSG,
		UserData:                awsec2.UserData_Custom(jsii.String(script)),
		RequireImdsv2:           jsii.Bool(true),
		HttpPutResponseHopLimit: jsii.Number(1),
		BlockDevices:            encryptedRoot(),
	}
	if burstable(s.cfg.WebInstanceType) {
		// As the single web instance's: a long burst slows to the
		// baseline instead of billing surplus credits.
		props.CpuCredits = awsec2.CpuCredits_STANDARD
	}
	template := awsec2.NewLaunchTemplate(s.stack, s.id("WebTemplate"), props)
	// Every web instance is a web-instance, as the single one is: by the
	// launch template's instance tags, and by the group's own Name,
	// which CDK would set to the construct's path.
	awscdk.Tags_Of(template).Add(jsii.String("Name"), jsii.String("web-instance"), nil)

	asg := awsautoscaling.NewAutoScalingGroup(s.stack, s.id("WebGroup"), &awsautoscaling.AutoScalingGroupProps{
		AutoScalingGroupName: jsii.String(group),
		Vpc:                  s.vpc,
		// One subnet per zone, the group balancing its instances across
		// them.
		VpcSubnets:     &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC},
		LaunchTemplate: template,
		// At least two, in two zones (webMin): one instance, or one
		// zone, going leaves a front.
		MinCapacity: jsii.Number(float64(s.cfg.WebMin)),
		MaxCapacity: jsii.Number(float64(s.cfg.WebMax)),
		// The stack completes only once the first instances answer
		// /readyz (each instance's boot signals, as the single instance's
		// does), and fails when they never do.
		Signals: awsautoscaling.Signals_WaitForMinCapacity(&awsautoscaling.SignalsOptions{Timeout: awscdk.Duration_Minutes(jsii.Number(15))}),
		// A redeploy that changes what web instances boot replaces them
		// one at a time, each new one answering before the next old one
		// goes (a replacing update would need a new group, and the
		// group's name is fixed); the one leaving drains for the
		// deregistration delay first.
		UpdatePolicy: awsautoscaling.UpdatePolicy_RollingUpdate(&awsautoscaling.RollingUpdateOptions{
			MaxBatchSize:          jsii.Number(1),
			MinInstancesInService: jsii.Number(float64(s.cfg.WebMin - 1)),
		}),
		DefaultInstanceWarmup: awscdk.Duration_Seconds(jsii.Number(webWarmup.Seconds())),
		// EC2 health checks only, not the balancer's: /readyz fails on
		// every instance alike when the queue or the bucket is down, and
		// replacing instances then would cut their held uploads and fix
		// nothing. The balancer stops sending to an unready instance, and
		// systemd restarts a web tier that dies.
	})
	awscdk.Tags_Of(asg).Add(jsii.String("Name"), jsii.String("web-instance"), &awscdk.TagProps{ApplyToLaunchedInstances: jsii.Bool(true)})

	targets := awselasticloadbalancingv2.NewApplicationTargetGroup(s.stack, s.id("WebTargets"), &awselasticloadbalancingv2.ApplicationTargetGroupProps{
		Vpc:        s.vpc,
		Port:       jsii.Number(events.WebPort),
		Protocol:   awselasticloadbalancingv2.ApplicationProtocol_HTTP,
		TargetType: awselasticloadbalancingv2.TargetType_INSTANCE,
		Targets:    &[]awselasticloadbalancingv2.IApplicationLoadBalancerTarget{asg},
		HealthCheck: &awselasticloadbalancingv2.HealthCheck{
			Path:                    jsii.String("/readyz"),
			Port:                    jsii.String(strconv.Itoa(events.WebPort)),
			Protocol:                awselasticloadbalancingv2.Protocol_HTTP,
			Interval:                awscdk.Duration_Seconds(jsii.Number(webHealthInterval.Seconds())),
			Timeout:                 awscdk.Duration_Seconds(jsii.Number(webHealthTimeout.Seconds())),
			HealthyThresholdCount:   jsii.Number(webHealthyChecks),
			UnhealthyThresholdCount: jsii.Number(webUnhealthyChecks),
			HealthyHttpCodes:        jsii.String("200"),
		},
		DeregistrationDelay: awscdk.Duration_Seconds(jsii.Number(webDeregistrationDelay.Seconds())),
	})
	alb := awselasticloadbalancingv2.NewApplicationLoadBalancer(s.stack, s.id("WebLoadBalancer"), &awselasticloadbalancingv2.ApplicationLoadBalancerProps{
		Vpc:            s.vpc,
		InternetFacing: jsii.Bool(true),
		VpcSubnets:     &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC},
		SecurityGroup:  albSG,
		IdleTimeout:    awscdk.Duration_Seconds(jsii.Number(albIdleTimeout.Seconds())),
		// Requests with header fields that are not valid HTTP are dropped
		// rather than passed to the web tier.
		DropInvalidHeaderFields: jsii.Bool(true),
	})
	alb.AddListener(s.id("Http"), &awselasticloadbalancingv2.BaseApplicationListenerProps{
		Port:     jsii.Number(albPort),
		Protocol: awselasticloadbalancingv2.ApplicationProtocol_HTTP,
		// The security group above says who may connect, not the CDK's
		// "open to the world" default.
		Open:                jsii.Bool(false),
		DefaultTargetGroups: &[]awselasticloadbalancingv2.IApplicationTargetGroup{targets},
	})

	// Target tracking on the uploads each instance holds (the web tier's
	// OpenUploads, sampled every 10 s; Average over all the group's
	// instances is the mean per instance). Not ALBRequestCountPerTarget:
	// it counts requests as they complete, minutes after the uploads that
	// load an instance arrived.
	asg.ScaleToTrackMetric(s.id("OpenUploadsPerInstance"), &awsautoscaling.MetricTargetTrackingProps{
		Metric: awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String(metricsNamespace),
			MetricName:    jsii.String("OpenUploads"),
			DimensionsMap: &map[string]*string{"Fleet": jsii.String(group)},
			Statistic:     jsii.String("Average"),
			Period:        awscdk.Duration_Minutes(jsii.Number(1)),
		}),
		TargetValue: jsii.Number(openUploadsTarget),
	})
	s.webGroup, s.webLB = asg, alb
}
