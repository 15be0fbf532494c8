package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// dashboardBody is the dashboard's JSON with each CloudFormation
// expression in it (the Fn::Join's non-string parts) replaced by its own
// JSON text, quotes dropped, so the body parses and the tests can see
// what each expression refers to.
func dashboardBody(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	props := resources(doc, "AWS::CloudWatch::Dashboard")[onlyID(t, doc, "AWS::CloudWatch::Dashboard")]["Properties"].(map[string]any)
	var text strings.Builder
	switch body := props["DashboardBody"].(type) {
	case string:
		text.WriteString(body)
	case map[string]any:
		join := body["Fn::Join"].([]any)
		for _, part := range join[1].([]any) {
			if s, ok := part.(string); ok {
				text.WriteString(s)
				continue
			}
			b, _ := json.Marshal(part)
			text.WriteString(strings.ReplaceAll(string(b), `"`, ""))
		}
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(text.String()), &out); err != nil {
		t.Fatalf("dashboard body: %v\n%s", err, text.String())
	}
	return out
}

// dashboardMetric is one line of a graph: namespace, name, dimensions
// and statistic.
type dashboardMetric struct {
	namespace, name, dimension, value, stat string
}

func dashboardMetrics(t *testing.T, body map[string]any) (metrics []dashboardMetric, alarms []string) {
	t.Helper()
	for _, w := range body["widgets"].([]any) {
		props := w.(map[string]any)["properties"].(map[string]any)
		if ann, ok := props["annotations"].(map[string]any); ok {
			for _, a := range asSlice(ann["alarms"]) {
				alarms = append(alarms, fmt.Sprint(a))
			}
		}
		for _, m := range asSlice(props["metrics"]) {
			line := m.([]any)
			if len(line) != 5 {
				t.Fatalf("metric %v: want namespace, name, one dimension and options", line)
			}
			opts := line[4].(map[string]any)
			metrics = append(metrics, dashboardMetric{fmt.Sprint(line[0]), fmt.Sprint(line[1]), fmt.Sprint(line[2]), fmt.Sprint(line[3]), fmt.Sprint(opts["stat"])})
		}
	}
	return metrics, alarms
}

// The dashboard shows backlog and fleet, latency, throughput, errors,
// the queues and the dead letters: every metric the scaler, the web tier
// and the workers emit, by this fleet, and the SQS metrics of this
// stack's queues.
func TestDashboard(t *testing.T) {
	_, doc, _ := synth(t)
	props := resources(doc, "AWS::CloudWatch::Dashboard")[onlyID(t, doc, "AWS::CloudWatch::Dashboard")]["Properties"].(map[string]any)
	if name, _ := json.Marshal(props["DashboardName"]); string(name) != `{"Fn::Join":["-",["surge",{"Ref":"AWS::Region"}]]}` {
		t.Errorf("DashboardName = %s, want surge-<region>", name)
	}
	metrics, alarms := dashboardMetrics(t, dashboardBody(t, doc))
	surge := func(name, stat string) dashboardMetric { return dashboardMetric{"Surge", name, "Fleet", "surge", stat} }
	queue := func(logicalPrefix, name string) dashboardMetric {
		var id string
		for rid := range resources(doc, "AWS::SQS::Queue") {
			if strings.HasPrefix(rid, logicalPrefix) {
				id = rid
			}
		}
		return dashboardMetric{"AWS/SQS", name, "QueueName", "{Fn::GetAtt:[" + id + ",QueueName]}", "Maximum"}
	}
	want := []dashboardMetric{
		// The scaler's (internal/scaler/lambdascaler.go, emit).
		surge("Backlog", "Maximum"), surge("DesiredWorkers", "Maximum"), surge("RunningWorkers", "Maximum"),
		surge("LaunchCeilingEpisodes", "Sum"),
		// The web tier's.
		surge("Uploads", "Sum"), surge("UploadErrors", "Sum"), surge("CachedAnswers", "Sum"),
		surge("UploadLatency", "p50"), surge("UploadLatency", "p99"), surge("ResultWait", "p50"), surge("ResultWait", "p99"),
		// The workers'.
		surge("Recognised", "Sum"), surge("RecognitionFailed", "Sum"), surge("InferenceTime", "p50"), surge("InferenceTime", "p99"),
		queue("RequestQueue", "ApproximateNumberOfMessagesVisible"), queue("RequestQueue", "ApproximateNumberOfMessagesNotVisible"),
		queue("ResponseQueue", "ApproximateNumberOfMessagesVisible"),
		queue("RequestDeadLetters", "ApproximateNumberOfMessagesVisible"),
	}
	for _, w := range want {
		if !slices.Contains(metrics, w) {
			t.Errorf("the dashboard has no %+v", w)
		}
	}
	if len(metrics) != len(want) {
		t.Errorf("the dashboard has %d metrics, want %d: %+v", len(metrics), len(want), metrics)
	}
	// The alarm by its ARN, made of its name (see monitoring).
	if len(alarms) != 1 || !strings.HasPrefix(alarms[0], "arn:") || !strings.HasSuffix(alarms[0], ":cloudwatch:{Ref:AWS::Region}:{Ref:AWS::AccountId}:alarm:surge-req-dlq-not-empty") {
		t.Errorf("alarms on the dashboard: %v, want the dead-letter alarm", alarms)
	}
}

// The alarm goes off at the first dead letter, and an idle, empty queue
// (which publishes no metrics) keeps it quiet; by default it notifies no
// one.
func TestDeadLetterAlarm(t *testing.T) {
	tmpl, doc, _ := synth(t)
	dlq := resourceID(t, doc, "AWS::SQS::Queue", "RequestDeadLetters")
	(*tmpl).HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
		"AlarmName":          "surge-req-dlq-not-empty",
		"Namespace":          "AWS/SQS",
		"MetricName":         "ApproximateNumberOfMessagesVisible",
		"Dimensions":         []any{map[string]any{"Name": "QueueName", "Value": map[string]any{"Fn::GetAtt": []any{dlq, "QueueName"}}}},
		"Statistic":          "Maximum",
		"Period":             300,
		"Threshold":          1,
		"ComparisonOperator": "GreaterThanOrEqualToThreshold",
		"EvaluationPeriods":  1,
		"DatapointsToAlarm":  1,
		"TreatMissingData":   "notBreaching",
		"AlarmActions":       assertions.Match_Absent(),
		"OKActions":          assertions.Match_Absent(),
	})
}

func TestAlarmNotifications(t *testing.T) {
	email := synthWith(t, map[string]any{"alarmEmail": "ops@example.com"})
	t.Run("email", func(t *testing.T) {
		tmpl := *email.template
		tmpl.ResourceCountIs(jsii.String("AWS::SNS::Topic"), jsii.Number(1))
		topic := onlyID(t, email.json, "AWS::SNS::Topic")
		tmpl.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), map[string]any{
			"Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": map[string]any{"Ref": topic},
		})
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{
			"AlarmActions": []any{map[string]any{"Ref": topic}},
			"OKActions":    []any{map[string]any{"Ref": topic}},
		})
		// The topic takes messages over TLS only.
		tmpl.HasResourceProperties(jsii.String("AWS::SNS::TopicPolicy"), map[string]any{
			"PolicyDocument": assertions.Match_ObjectLike(&map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
				assertions.Match_ObjectLike(&map[string]any{"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}}),
			})}),
		})
	})
	arn := "arn:aws:sns:us-east-1:123456789012:ops"
	existing := synthWith(t, map[string]any{"alarmTopicArn": arn})
	t.Run("existing topic", func(t *testing.T) {
		tmpl := *existing.template
		tmpl.ResourceCountIs(jsii.String("AWS::SNS::Topic"), jsii.Number(0))
		tmpl.ResourceCountIs(jsii.String("AWS::SNS::Subscription"), jsii.Number(0))
		tmpl.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), map[string]any{"AlarmActions": []any{arn}, "OKActions": []any{arn}})
	})
}

// Both tiers' instances run the agent with an EMF listener, send their
// metrics to it under the fleet's name and name the stack's metrics log
// group, which the agent may write to and nothing else may; nobody may
// create log groups or put metrics directly.
func TestMetricsReachCloudWatch(t *testing.T) {
	_, doc, _ := synth(t)
	group := resourceID(t, doc, "AWS::Logs::LogGroup", "MetricLogs")
	if r := resources(doc, "AWS::Logs::LogGroup")[group]; r["DeletionPolicy"] != "Delete" || r["Properties"].(map[string]any)["RetentionInDays"] != float64(14) {
		t.Errorf("metrics log group %v: want 14 days' retention, deleted with the stack", r)
	}
	for _, typ := range []string{"AWS::EC2::LaunchTemplate", "AWS::EC2::Instance"} {
		data := userData(t, doc, typ)
		for _, want := range []string{
			`SURGE_EMF=tcp://127.0.0.1:25888\n`, `SURGE_EMF_LOG_GROUP=",{"Ref":"` + group + `"}`, `SURGE_FLEET=surge\n`,
			`\"metrics_collected\": {\n      \"emf\": {}\n    }`,
		} {
			if !strings.Contains(data, want) {
				t.Errorf("%s user data lacks %s", typ, want)
			}
		}
	}
	arn := map[string]any{"Fn::GetAtt": []any{group, "Arn"}}
	shippers := map[string]bool{}
	for id, p := range resources(doc, "AWS::IAM::Policy") {
		props := p["Properties"].(map[string]any)
		for _, s := range props["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			st := s.(map[string]any)
			actions := strings_(st["Action"])
			for _, a := range actions {
				if a == "logs:CreateLogGroup" || strings.HasPrefix(a, "cloudwatch:") {
					t.Errorf("%s: %s", id, a)
				}
			}
			onGroup := slices.ContainsFunc(asSlice(st["Resource"]), func(r any) bool { return reflect.DeepEqual(r, arn) })
			if !onGroup {
				continue
			}
			if st["Sid"] != "ShipMetrics" || len(asSlice(st["Resource"])) != 1 ||
				!reflect.DeepEqual(actions, []string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}) {
				t.Errorf("%s: %v on the metrics log group", id, st)
			}
			for _, role := range asSlice(props["Roles"]) {
				shippers[fmt.Sprint(role.(map[string]any)["Ref"])] = true
			}
		}
	}
	if want := map[string]bool{roleID(t, doc, "WebRole"): true, roleID(t, doc, "WorkerRole"): true}; !reflect.DeepEqual(shippers, want) {
		t.Errorf("roles that may write metrics: %v, want %v", shippers, want)
	}
}
