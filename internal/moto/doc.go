// Package moto runs moto_server, the AWS emulator, on loopback (server.go)
// for the tests (testing.go) and for `surge emulate`, behind a proxy.
//
// The proxy is an HTTP reverse proxy in front of moto_server that
// adds the AWS behaviours moto hides, so that every process of the
// emulated deployment (the scaler and the web tier and workers through the
// Go SDK, the instances' boot scripts through the aws CLI, any boto3
// script) sees them: each one's AWS_ENDPOINT_URL is the proxy's URL. SDK
// middleware would reach only the Go clients; hence a proxy.
//
// Requests are told apart by the SigV4 credential scope
// (Credential=AKID/date/region/service/aws4_request, or X-Amz-Credential
// for pre-signed URLs); the access key id is the caller. What the proxy
// does not change streams through untouched. Its own look-ups go straight
// to moto with SDK clients.
//
// # What it adds
//
// EC2 (Query protocol; answers rewritten with etree, keeping moto's XML):
//   - Instance lifecycle on the proxy's Clock: "pending" for PendingFor after
//     an instance is first seen, "shutting-down" for ShuttingDownFor after
//     its termination, then "terminated", and gone from DescribeInstances
//     TerminatedVisible later (about an hour on AWS); a DescribeInstances
//     naming a gone instance answers InvalidInstanceID.NotFound.
//     instance-state-name/-code filters are applied by the proxy to the
//     states it shows.
//   - RunInstances client tokens, which moto ignores: a repeat answers the
//     first answer with each instance's current state; other parameters
//     answer IdempotentParameterMismatch; a token is remembered TokenMemory
//     (24 h) after its last instance terminated. Concurrent repeats launch
//     once. https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Run_Instance_Idempotency.html
//   - The account's vCPU quota for Standard instances (VcpuLimitExceeded,
//     400): https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-on-demand-instances.html#ec2-on-demand-instances-limits
//   - Per-AZ capacity (InsufficientInstanceCapacity, 500, a server error
//     in https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html),
//     with AWS's message naming the zones that have capacity. A launch
//     that names no subnet or zone goes to a zone with capacity, as EC2
//     chooses one.
//   - Instance types a zone does not offer (Unsupported, zone:type pairs):
//     RunInstances in that zone answers Unsupported (400) naming the zones
//     that offer the type, before any quota or capacity check; a launch
//     that names no subnet or zone goes to a zone that offers it.
//     https://repost.aws/knowledge-center/ec2-instance-type-not-supported-az-error
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
//   - StartInstances of a stopped instance: refused with
//     InsufficientInstanceCapacity (500) when its own zone has no capacity
//     (a stopped instance cannot move zones), leaving it stopped; otherwise
//     "pending" for PendingFor again and LaunchTime moved to the start, as
//     EC2 shows the last start there.
//   - RunInstances that takes time to answer (RunInstancesDelay, 0 by
//     default), as a launch on EC2 takes seconds: its instances exist at
//     once (they count against the quota and hold their network
//     interfaces, so a security group they are in cannot be deleted) but
//     DescribeInstances lists them only once it has answered (naming one
//     before then answers InvalidInstanceID.NotFound), as EC2's eventual
//     consistency allows; a caller that gives up in the meantime launched
//     them all the same. So a launch of many names one at a time is seen
//     by others as a fleet growing name by name, each name late.
//     https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
//   - MinCount/MaxCount as AWS reads them: as many instances as fit, up to
//     MaxCount (moto launches MinCount).
//   - An instance launched from a template takes the template's
//     InstanceInitiatedShutdownBehavior (moto takes only the request's), so
//     one that powers itself off terminates rather than stops.
//     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html
//
// S3: global bucket names owned by other accounts (BucketAlreadyExists,
// 409), and callers whose object reads are denied (AccessDenied, 403), as
// an instance sees while its role propagates.
//
// IAM: a new role's permissions propagate (RolePropagation): calls from
// callers matching a pattern ("lambda-*") are refused for a while after
// each one's first, as EC2 (UnauthorizedOperation), S3 (AccessDenied) and
// Lambda (AccessDeniedException) refuse a role that lacks the permission,
// all 403; other services' calls go through.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
//
// Lambda: the account's concurrency limit, which moto lacks:
// GetAccountSettings, and PutFunctionConcurrency refused when fewer than
// 10 executions would stay unreserved.
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html
// https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html
//
// SQS: a deleted queue's name is refused for 60 s (QueueDeletedRecently),
// through CreateQueue and through a stack that names it, the queues of a
// deleted stack included.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteQueue.html
//
// CloudFormation:
//   - Change sets, as the CDK CLI deploys: a TemplateURL at this endpoint
//     (path-style, as the CLI makes it from AWS_ENDPOINT_URL) is given to
//     moto as the AWS URL of the same object. moto keeps and describes
//     change sets but executes them through its update path, without
//     outputs or custom resources, so the proxy executes them: CREATE as a
//     CreateStack in place of moto's review stack (requests naming the
//     review stack's id, as the CLI follows it, are sent to the new one),
//     UPDATE as an UpdateStack, each with the handling below; a change set
//     whose pre-flight fails leaves the stack ROLLBACK_COMPLETE (or
//     UPDATE_ROLLBACK_COMPLETE) with the failed resource's event, as AWS
//     would. DeleteChangeSet of one that is not there succeeds and
//     DescribeChangeSet answers ChangeSetNotFound (404), as on AWS, where
//     moto fails. An update keeping a parameter that took its default
//     (UsePreviousValue, which the CLI sends for every parameter) applies
//     the default again; moto fails on it.
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html
//   - Creation policies, which moto ignores: a resource whose
//     CreationPolicy asks for signals keeps its stack (or the update that
//     made or replaced it) in progress until SignalResource brings Count
//     SUCCESS signals; a FAILURE signal or none within the Timeout
//     (ProxyConfig.SignalTimeout overrides it) fails it. Instances an
//     update makes get the aws:cloudformation:* tags moto gives only at a
//     stack's creation.
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-creationpolicy.html
//   - Auto Scaling groups (cfngroups.go): moto makes a stack's group and
//     launches its instances but leaves them without the
//     aws:cloudformation:* tags CloudFormation gives a group's instances,
//     by which an instance signals the group's creation policy; the proxy
//     adds them once the stack is made or updated. Deleting the stack
//     deletes the group with its instances, which are the stack's, not
//     instances outside it holding its security groups and subnets.
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-autoscaling-autoscalinggroup-tagproperty.html
//   - Pre-flight checks on CreateStack and UpdateStack of JSON templates
//     (YAML passes unchecked): reserved concurrency, bucket names other
//     accounts own, named resources that already exist, an instance whose
//     subnet is in another zone than its AvailabilityZone. Intrinsics are
//     resolved as far as literals, parameters, pseudo parameters,
//     Fn::GetAZs, Fn::Select and Fn::Join go; a check that needs anything
//     else is skipped.
//   - Custom resources, which moto never runs: each Create runs through the
//     Config's Invoker, one at a time in dependency order, with a
//     ResponseURL on the proxy; SUCCESS completes the resource in moto
//     (with its Data for Fn::GetAtt); FAILED or no answer rolls the stack
//     back (ROLLBACK_COMPLETE, with the reason in DescribeStackEvents).
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
//   - DeleteStack answers at once and deletes in the background: custom
//     resources' Delete first (reverse order), then the check AWS would
//     fail on: an instance outside the stack using the stack's security
//     group or subnet leaves the stack DELETE_FAILED (moto deletes a group
//     in use silently). Instances already shutting down are waited for.
//     The stack's route tables and internet gateways are deleted before
//     moto deletes the rest (its CloudFormation cannot, and then fails on
//     the VPC), and the stack's instances have ended when it is gone, as
//     CloudFormation waits for them.
//   - Resource types moto's CloudFormation does not implement are skipped
//     by moto with only a warning in its log. AWS::Lambda::EventInvokeConfig
//     and AWS::EC2::EIPAssociation are not: once moto has made (or updated)
//     the stack, the proxy sets the function's asynchronous invocation
//     through Lambda's API, and puts the Elastic IP on the instance (again
//     after an update, on a replacement), and one it cannot carry out rolls
//     a new stack back with the reason.
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-eventinvokeconfig.html
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ec2-eipassociation.html
//   - DescribeStacks, ListStacks and DescribeStackEvents show the status
//     and events of the stacks the proxy works on.
//
// # Simplifications
//
//   - A pre-flight failure refuses the request with a ValidationError whose
//     message is the failed resource's event prefixed with its logical id;
//     AWS would create the stack and roll it back.
//   - A DescribeInstances with a state filter answers in one page
//     (MaxResults and NextToken are dropped), since the proxy filters after
//     moto answers.
//   - vCPUs come from a small table of the t2, t3, t3a, t4g, m5, m6i, m7i,
//     c5, c6i, c7i, r5 and r6i families and Graviton's m6g, m7g, c6g, c7g,
//     r6g and r7g (and m1.small, EC2's default type); any other type is
//     refused with InvalidParameterValue.
//   - One account is served (moto's default, which every caller moto did
//     not issue keys to is in): the proxy's state is kept per region.
//   - A rolled-back stack's non-custom resources stay in moto until the
//     stack is deleted; UpdateStack does not run custom resources' Update.
//   - A group's instances launched after the stack was made or updated
//     (moto does not scale groups by itself) get no aws:cloudformation:*
//     tags. The load balancer's and target group's attributes and
//     AWS::AutoScaling::ScalingPolicy are left as moto leaves them: not
//     applied, and skipped.
//   - Resources the proxy carries out for moto (EventInvokeConfig) are not
//     listed among the stack's resources; an update that cannot carry one
//     out is logged, not rolled back. Other types moto does not implement
//     (AWS::CloudWatch::Alarm, say) are still left out silently.
//
// # Admin endpoints
//
// On the same listener, under /_surge/, answering JSON, so that a user of
// make emulate or a boto3 script can drive them too:
//
//	GET  /_surge/clock                       {"now": RFC3339}
//	POST /_surge/clock?advance=2h            advances the clock
//	POST /_surge/ec2?vcpuQuota=8&noCapacity=us-east-1a,us-east-1b   (empty noCapacity clears)
//	POST /_surge/ec2?unsupported=us-east-1e:t3.small,us-east-1f:t3.small   (empty clears)
//	POST /_surge/ec2?runInstancesDelay=2s    RunInstancesDelay (0: none); a malformed setting sets nothing
//	POST /_surge/fail-downloads?caller=<access key id>&fail=true|false
//	POST /_surge/iam?caller=<access key id pattern>&propagation=10s   (0 removes the pattern)
//	PUT  /_surge/cfn-response?request=<id>   custom resources' ResponseURL
package moto
