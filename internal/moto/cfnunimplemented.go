package moto

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// moto's CloudFormation leaves a resource of a type it does not implement
// out of the stack, with only a warning in its log: a template deployed
// into it would seem to work while part of it was never made. Those types
// whose effect an API moto does implement can carry out, the proxy
// carries out once moto has made the rest of the stack, as the resource's
// handler would on AWS; they still do not show among the stack's
// resources.

// applyUnimplemented carries out the template's resources of types moto's
// CloudFormation does not implement but the proxy does, for the stack
// moto has just created or updated. It returns the logical id of the
// first that fails, and why.
func (p *Proxy) applyUnimplemented(ctx context.Context, region, stackID, stackName string, t *template, params map[string]string) (failed string, err error) {
	var ids []string
	for _, id := range t.order {
		switch t.Resources[id].Type {
		case "AWS::Lambda::EventInvokeConfig", "AWS::EC2::EIPAssociation":
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	resources, err := p.stackResources(ctx, region, stackID)
	if err != nil {
		return ids[0], err
	}
	physical := map[string]string{}
	for _, r := range resources {
		if r.PhysicalResourceId != nil {
			physical[aws.ToString(r.LogicalResourceId)] = *r.PhysicalResourceId
		}
	}
	rv := &resolver{
		region: region, accountID: defaultAccount, stackName: stackName, stackID: stackID,
		params: params, template: t, physical: physical,
		zones: func() ([]string, error) { return p.zones(ctx, region) },
	}
	for _, id := range ids {
		apply := p.putEventInvokeConfig
		if t.Resources[id].Type == "AWS::EC2::EIPAssociation" {
			apply = p.associateAddress
		}
		if err := apply(ctx, region, rv, t.Resources[id].Properties); err != nil {
			return id, err
		}
		p.log.Info("applied a resource moto's CloudFormation does not implement", "stack", stackName, "resource", id, "type", t.Resources[id].Type)
	}
	return "", nil
}

// putEventInvokeConfig is AWS::Lambda::EventInvokeConfig's effect: the
// function's asynchronous invocation settings.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-eventinvokeconfig.html
func (p *Proxy) putEventInvokeConfig(ctx context.Context, region string, rv *resolver, props map[string]any) error {
	function, ok := rv.resolvedString(props["FunctionName"])
	if !ok || function == "" {
		return errors.New("FunctionName cannot be resolved")
	}
	in := &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String(functionName(function))}
	if q, ok := rv.resolvedString(props["Qualifier"]); ok && q != "" {
		in.Qualifier = aws.String(q)
	}
	if n, ok := toIntProperty(rv, props["MaximumRetryAttempts"]); ok {
		in.MaximumRetryAttempts = aws.Int32(int32(n))
	}
	if n, ok := toIntProperty(rv, props["MaximumEventAgeInSeconds"]); ok {
		in.MaximumEventAgeInSeconds = aws.Int32(int32(n))
	}
	if dc, ok := rv.resolvePartial(props["DestinationConfig"]).(map[string]any); ok {
		in.DestinationConfig = &lambdatypes.DestinationConfig{}
		if d, ok := destination(dc["OnSuccess"]); ok {
			in.DestinationConfig.OnSuccess = &lambdatypes.OnSuccess{Destination: aws.String(d)}
		}
		if d, ok := destination(dc["OnFailure"]); ok {
			in.DestinationConfig.OnFailure = &lambdatypes.OnFailure{Destination: aws.String(d)}
		}
	}
	// Put overwrites a function's configuration on AWS; moto 5.2.1 keeps
	// the first and appends, so the old one goes first.
	m := p.moto.in(region).Lambda
	var notFound *lambdatypes.ResourceNotFoundException
	if _, err := m.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: in.FunctionName, Qualifier: in.Qualifier}); err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("setting the asynchronous invocation of %s: %w", function, err)
	}
	if _, err := m.PutFunctionEventInvokeConfig(ctx, in); err != nil {
		return fmt.Errorf("setting the asynchronous invocation of %s: %w", function, err)
	}
	return nil
}

func destination(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	d, ok := m["Destination"].(string)
	return d, ok && d != ""
}

// associateAddress is AWS::EC2::EIPAssociation's effect: the Elastic IP
// (by its allocation id, or its address) on the instance, taken from any
// instance that had it, as a replaced instance's association is replaced.
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ec2-eipassociation.html
func (p *Proxy) associateAddress(ctx context.Context, region string, rv *resolver, props map[string]any) error {
	instance, ok := rv.resolvedString(props["InstanceId"])
	if !ok || instance == "" {
		return errors.New("InstanceId cannot be resolved")
	}
	in := &ec2.AssociateAddressInput{InstanceId: aws.String(instance), AllowReassociation: aws.Bool(true)}
	if ip, ok := rv.resolvedString(props["EIP"]); ok && ip != "" {
		in.PublicIp = aws.String(ip)
	} else if att, ok := props["AllocationId"].(map[string]any)["Fn::GetAtt"].([]any); ok && len(att) == 2 && att[1] == "AllocationId" {
		// moto's physical id of an Elastic IP is its address.
		name, _ := att[0].(string)
		if rv.physical[name] == "" {
			return fmt.Errorf("AllocationId: %s is not in the stack", name)
		}
		in.PublicIp = aws.String(rv.physical[name])
	} else if id, ok := rv.resolvedString(props["AllocationId"]); ok && id != "" {
		in.AllocationId = aws.String(id)
	} else {
		return errors.New("neither EIP nor AllocationId can be resolved")
	}
	if _, err := p.moto.in(region).EC2.AssociateAddress(ctx, in); err != nil {
		return fmt.Errorf("associating the Elastic IP with %s: %w", instance, err)
	}
	return nil
}
