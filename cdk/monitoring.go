package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/jsii-runtime-go"
)

// metricsNamespace is where the scaler, the web tier and the workers put
// their embedded-metric-format metrics, each with the dimension Fleet.
const metricsNamespace = "Surge"

// metricLogs is the log group the instances' CloudWatch agents put the
// tiers' embedded-metric-format lines in, from which CloudWatch Logs
// extracts the metrics; kept apart from the service logs, and gone with
// the stack.
func (s *surge) metricLogs() {
	s.emfLogs = awslogs.NewLogGroup(s.stack, s.id("MetricLogs"), &awslogs.LogGroupProps{
		Retention:     retention(s.cfg.LogRetentionDays),
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}

// fleetMetric is one of the namespace's metrics for this fleet, over a
// minute: the period the tiers emit at.
func (s *surge) fleetMetric(name, statistic, label string) awscloudwatch.Metric {
	return s.metricOf(s.names.Fleet, name, statistic, label)
}

// webMetric is one of the web tier's metrics: the fleet's, or with
// several web instances their group's.
func (s *surge) webMetric(name, statistic, label string) awscloudwatch.Metric {
	if s.cfg.WebMax > 1 {
		return s.metricOf(s.webGroupName(), name, statistic, label)
	}
	return s.fleetMetric(name, statistic, label)
}

func (s *surge) metricOf(fleet, name, statistic, label string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(metricsNamespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{"Fleet": jsii.String(fleet)},
		Statistic:     jsii.String(statistic),
		Period:        awscdk.Duration_Minutes(jsii.Number(1)),
		Label:         jsii.String(label),
	})
}

// sqsOptions: the most messages over a minute, the resolution SQS
// publishes at.
func sqsOptions(label string) *awscloudwatch.MetricOptions {
	return &awscloudwatch.MetricOptions{
		Statistic: jsii.String("Maximum"),
		Period:    awscdk.Duration_Minutes(jsii.Number(1)),
		Label:     jsii.String(label),
	}
}

// monitoring is the stack's CloudWatch dashboard and its alarm on the
// dead-letter queue.
func (s *surge) monitoring() {
	s.deadLetterAlarm()
	graph := func(title, unit string, metrics ...awscloudwatch.IMetric) awscloudwatch.IWidget {
		return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title:     jsii.String(title),
			Left:      &metrics,
			LeftYAxis: &awscloudwatch.YAxisProps{Label: jsii.String(unit), Min: jsii.Number(0), ShowUnits: jsii.Bool(false)},
			Width:     jsii.Number(8),
			Height:    jsii.Number(6),
		})
	}
	m, w := s.fleetMetric, s.webMetric
	row := func(ws ...awscloudwatch.IWidget) *[]awscloudwatch.IWidget { return &ws }
	last := row(
		graph("Dead letters", "messages",
			s.dlq.MetricApproximateNumberOfMessagesVisible(sqsOptions("requests dead-lettered"))),
		awscloudwatch.NewAlarmWidget(&awscloudwatch.AlarmWidgetProps{
			Title: jsii.String("Dead-letter alarm"),
			// By name, not by the resource: emulated AWS (moto)
			// creates no alarms, and a reference to the resource
			// would fail the stack there.
			Alarm:  awscloudwatch.Alarm_FromAlarmName(s.stack, s.id("DeadLetterAlarmByName"), jsii.String(s.deadLetterAlarmName())),
			Width:  jsii.Number(8),
			Height: jsii.Number(6),
		}),
	)
	if s.cfg.WebMax > 1 {
		// What the web group's target tracking scales on, against its
		// target.
		*last = append(*last, awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title:     jsii.String("Open uploads per web instance"),
			Left:      &[]awscloudwatch.IMetric{w("OpenUploads", "Average", "mean per instance"), w("OpenUploads", "Maximum", "most on one instance")},
			LeftYAxis: &awscloudwatch.YAxisProps{Label: jsii.String("uploads"), Min: jsii.Number(0), ShowUnits: jsii.Bool(false)},
			LeftAnnotations: &[]*awscloudwatch.HorizontalAnnotation{{
				Value: jsii.Number(openUploadsTarget), Label: jsii.String("scaling target"),
			}},
			Width:  jsii.Number(8),
			Height: jsii.Number(6),
		}))
	}
	awscloudwatch.NewDashboard(s.stack, s.id("Dashboard"), &awscloudwatch.DashboardProps{
		// Dashboards are global to an account; alarms and metrics are by
		// region, so the name says both.
		DashboardName:   awscdk.Fn_Join(jsii.String("-"), &[]*string{jsii.String(s.cfg.Prefix), awscdk.Aws_REGION()}),
		DefaultInterval: awscdk.Duration_Hours(jsii.Number(3)),
		Widgets: &[]*[]awscloudwatch.IWidget{
			row(
				graph("Backlog and fleet", "count",
					m("Backlog", "Maximum", "backlog (queued + in flight)"),
					m("DesiredWorkers", "Maximum", "desired workers"),
					m("RunningWorkers", "Maximum", "running workers")),
				graph("Request and response queues", "messages",
					s.req.MetricApproximateNumberOfMessagesVisible(sqsOptions("requests waiting")),
					s.req.MetricApproximateNumberOfMessagesNotVisible(sqsOptions("requests in flight")),
					s.resp.MetricApproximateNumberOfMessagesVisible(sqsOptions("answers waiting"))),
				graph("Answers per minute", "count",
					w("Uploads", "Sum", "uploads"),
					w("CachedAnswers", "Sum", "answered from the results table"),
					m("Recognised", "Sum", "recognised by workers")),
			),
			row(
				graph("Upload latency", "ms",
					w("UploadLatency", "p50", "upload p50"),
					w("UploadLatency", "p99", "upload p99"),
					w("ResultWait", "p50", "wait for the answer p50"),
					w("ResultWait", "p99", "wait for the answer p99")),
				graph("Inference time", "ms",
					m("InferenceTime", "p50", "inference p50"),
					m("InferenceTime", "p99", "inference p99")),
				graph("Errors", "count",
					w("UploadErrors", "Sum", "uploads answered 4xx/5xx"),
					m("RecognitionFailed", "Sum", "recognitions failed"),
					m("LaunchCeilingEpisodes", "Sum", "launch ceilings hit")),
			),
			last,
		},
	})
}

func (s *surge) deadLetterAlarmName() string { return s.names.RequestDeadLetters + "-not-empty" }

// deadLetterAlarm goes off when a request is dead-lettered: every
// delivery of it ended without an answer. SQS publishes its queue
// metrics once a minute, while a queue is active (it holds messages or
// is called); an empty idle queue publishes nothing, which is no dead
// letters, hence missing data is not breaching.
func (s *surge) deadLetterAlarm() {
	alarm := awscloudwatch.NewAlarm(s.stack, s.id("DeadLetterAlarm"), &awscloudwatch.AlarmProps{
		AlarmName:        jsii.String(s.deadLetterAlarmName()),
		AlarmDescription: jsii.String("Surge: a request was dead-lettered (every delivery ended without an answer); read it from " + s.names.RequestDeadLetters),
		// The most messages over five minutes: one dead letter, however
		// briefly visible, fires it.
		// No label: a labelled metric would become a metric query.
		Metric: s.dlq.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{
			Statistic: jsii.String("Maximum"),
			Period:    awscdk.Duration_Minutes(jsii.Number(5)),
		}),
		Threshold:          jsii.Number(1),
		ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods:  jsii.Number(1),
		DatapointsToAlarm:  jsii.Number(1),
		TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
	})
	if topic := s.alarmTopic(); topic != nil {
		action := awscloudwatchactions.NewSnsAction(topic)
		alarm.AddAlarmAction(action)
		alarm.AddOkAction(action)
	}
}

// alarmTopic is where the alarm notifies: a topic of the stack's with
// one email subscription (confirmed from the email), an existing topic,
// or, by default, none.
func (s *surge) alarmTopic() awssns.ITopic {
	switch {
	case s.cfg.AlarmTopicArn != "":
		return awssns.Topic_FromTopicArn(s.stack, s.id("AlarmTopic"), jsii.String(s.cfg.AlarmTopicArn))
	case s.cfg.AlarmEmail != "":
		// Not encrypted at rest: CloudWatch can publish to an encrypted
		// topic only with a customer managed key (the AWS managed
		// aws/sns key's policy cannot let it), a monthly charge for alarm
		// messages that carry no data of the stack's.
		topic := awssns.NewTopic(s.stack, s.id("AlarmTopic"), &awssns.TopicProps{
			DisplayName: jsii.String("Surge " + s.cfg.Prefix + " alarms"),
			EnforceSSL:  jsii.Bool(true),
		})
		topic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(s.cfg.AlarmEmail), nil))
		return topic
	}
	return nil
}
