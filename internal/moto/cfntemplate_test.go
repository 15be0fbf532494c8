package moto

import (
	"errors"
	"reflect"
	"testing"
)

func TestResourceOrderAndCustomResources(t *testing.T) {
	body := []byte(`{"Resources": {
		"Zed":    {"Type": "Custom::A", "Properties": {"X": {"Fn::GetAtt": ["Mid", "Value"]}}},
		"Fn":     {"Type": "AWS::Lambda::Function"},
		"Mid":    {"Type": "AWS::SQS::Queue", "Properties": {"Q": {"Fn::GetAtt": "Alpha.Out"}}},
		"Alpha":  {"Type": "AWS::CloudFormation::CustomResource", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]}}},
		"Beta":   {"Type": "Custom::B", "DependsOn": ["Zed"]},
		"Gamma":  {"Type": "Custom::C"}
	}}`)
	tm, ok := parseTemplate(body)
	if !ok {
		t.Fatal("not parsed")
	}
	if want := []string{"Zed", "Fn", "Mid", "Alpha", "Beta", "Gamma"}; !reflect.DeepEqual(tm.order, want) {
		t.Errorf("order = %v, want %v", tm.order, want)
	}
	got, err := tm.customResources()
	if err != nil {
		t.Fatal(err)
	}
	// Zed needs Alpha (through Mid) and Beta needs Zed; among the ready
	// ones the earliest in the template goes first.
	if want := []string{"Alpha", "Zed", "Beta", "Gamma"}; !reflect.DeepEqual(got, want) {
		t.Errorf("custom resources = %v, want %v", got, want)
	}

	cyclic, _ := parseTemplate([]byte(`{"Resources": {"A": {"Type": "Custom::A", "DependsOn": "B"}, "B": {"Type": "Custom::B", "Properties": {"X": {"Ref": "A"}}}}}`))
	if _, err := cyclic.customResources(); err == nil {
		t.Error("a cycle was ordered")
	}
	if _, ok := parseTemplate([]byte("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n")); ok {
		t.Error("YAML parsed as JSON")
	}
}

func TestResolver(t *testing.T) {
	tm, _ := parseTemplate([]byte(`{
		"Parameters": {
			"Prefix": {"Type": "String", "Default": "surge"},
			"Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"},
			"Count": {"Type": "Number", "Default": 3},
			"NoDefault": {"Type": "String"}
		},
		"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}`))
	zones := func() ([]string, error) { return []string{"us-east-1a", "us-east-1b"}, nil }
	rv := &resolver{
		region: "us-east-1", accountID: "123456789012", stackName: "st", template: tm,
		params: map[string]string{"Subnets": "subnet-1, subnet-2"}, zones: zones,
		customData: map[string]map[string]any{"Custom": {"Value": "v"}},
	}
	cases := []struct {
		name string
		in   any
		want any
		ok   bool
	}{
		{"literal", "x", "x", true},
		{"number", 3.0, 3.0, true},
		{"parameter default", map[string]any{"Ref": "Prefix"}, "surge", true},
		{"number default", map[string]any{"Ref": "Count"}, 3.0, true},
		{"list parameter", map[string]any{"Ref": "Subnets"}, []any{"subnet-1", "subnet-2"}, true},
		{"parameter without value", map[string]any{"Ref": "NoDefault"}, nil, false},
		{"region", map[string]any{"Ref": "AWS::Region"}, "us-east-1", true},
		{"account", map[string]any{"Ref": "AWS::AccountId"}, "123456789012", true},
		{"stack name", map[string]any{"Ref": "AWS::StackName"}, "st", true},
		{"url suffix", map[string]any{"Ref": "AWS::URLSuffix"}, "amazonaws.com", true},
		{"partition", map[string]any{"Ref": "AWS::Partition"}, "aws", true},
		{"resource before it exists", map[string]any{"Ref": "Q"}, nil, false},
		{"GetAZs", map[string]any{"Fn::GetAZs": ""}, []any{"us-east-1a", "us-east-1b"}, true},
		{"GetAZs of the region", map[string]any{"Fn::GetAZs": map[string]any{"Ref": "AWS::Region"}}, []any{"us-east-1a", "us-east-1b"}, true},
		{"GetAZs of another region", map[string]any{"Fn::GetAZs": "eu-west-1"}, nil, false},
		{"Select GetAZs", map[string]any{"Fn::Select": []any{1.0, map[string]any{"Fn::GetAZs": ""}}}, "us-east-1b", true},
		{"Select with string index", map[string]any{"Fn::Select": []any{"0", map[string]any{"Ref": "Subnets"}}}, "subnet-1", true},
		{"Select out of range", map[string]any{"Fn::Select": []any{5.0, map[string]any{"Fn::GetAZs": ""}}}, nil, false},
		{"Join", map[string]any{"Fn::Join": []any{"-", []any{map[string]any{"Ref": "Prefix"}, "in", "bucket"}}}, "surge-in-bucket", true},
		{"Join of unknown", map[string]any{"Fn::Join": []any{"-", []any{map[string]any{"Ref": "Q"}, "x"}}}, nil, false},
		{"GetAtt of a custom resource", map[string]any{"Fn::GetAtt": []any{"Custom", "Value"}}, "v", true},
		{"GetAtt of another resource", map[string]any{"Fn::GetAtt": []any{"Q", "Arn"}}, nil, false},
		{"Sub is unknown", map[string]any{"Fn::Sub": "${AWS::Region}"}, nil, false},
		{"object of literals", map[string]any{"A": "a", "B": map[string]any{"Ref": "Prefix"}}, map[string]any{"A": "a", "B": "surge"}, true},
	}
	for _, c := range cases {
		got, ok := rv.resolve(c.in)
		if ok != c.ok || (ok && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("%s: resolve = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	partial := rv.resolvePartial(map[string]any{"A": map[string]any{"Ref": "Prefix"}, "B": map[string]any{"Fn::Sub": "x"}})
	want := map[string]any{"A": "surge", "B": map[string]any{"Fn::Sub": "x"}}
	if !reflect.DeepEqual(partial, want) {
		t.Errorf("resolvePartial = %v, want %v", partial, want)
	}
	failing := &resolver{region: "us-east-1", zones: func() ([]string, error) { return nil, errors.New("down") }}
	if _, ok := failing.resolve(map[string]any{"Fn::GetAZs": ""}); ok {
		t.Error("GetAZs resolved while zones failed")
	}
}

func TestS3Location(t *testing.T) {
	cases := map[string][2]string{
		"https://s3.amazonaws.com/cdk-assets/t.json":                {"cdk-assets", "t.json"},
		"https://s3.us-west-2.amazonaws.com/b/dir/t.json":           {"b", "dir/t.json"},
		"https://b.s3.amazonaws.com/dir/t.json":                     {"b", "dir/t.json"},
		"https://b.s3.us-east-1.amazonaws.com/t.json":               {"b", "t.json"},
		"http://127.0.0.1:4566/b/t.json":                            {"b", "t.json"},
		"https://cdk-hnb659fds-assets.s3.eu-west-1.amazonaws.com/x": {"cdk-hnb659fds-assets", "x"},
	}
	for raw, want := range cases {
		b, k, err := s3Location(raw)
		if err != nil || b != want[0] || k != want[1] {
			t.Errorf("s3Location(%s) = %s, %s, %v", raw, b, k, err)
		}
	}
	if _, _, err := s3Location("https://example.com/"); err == nil {
		t.Error("a URL without an object")
	}
}

func TestFunctionName(t *testing.T) {
	for in, want := range map[string]string{
		"scaler": "scaler", "arn:aws:lambda:us-east-1:123456789012:function:scaler": "scaler",
		"arn:aws:lambda:us-east-1:123456789012:function:scaler:live": "scaler", "123456789012:function:scaler": "scaler", "scaler:1": "scaler",
	} {
		if got := functionName(in); got != want {
			t.Errorf("functionName(%s) = %s", in, got)
		}
	}
}
