package moto

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// A stack's Auto Scaling groups: moto's CloudFormation makes them, and
// moto launches their instances at once, tagged with the group's name
// (aws:autoscaling:groupName) and what its tags propagate. Two things
// CloudFormation does for such a group moto does not:
//
//   - CloudFormation tags every group it makes, and so the group's
//     instances, with aws:cloudformation:stack-name, stack-id and
//     logical-id (the group's), which is how an instance finds what to
//     signal for the group's creation policy.
//     https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-autoscaling-autoscalinggroup-tagproperty.html
//   - Deleting the stack deletes the group, which terminates its
//     instances and waits for them: they are the stack's, not instances
//     outside it holding its security groups and subnets.

// groupTag is the tag EC2 Auto Scaling puts on each instance of a group,
// naming it.
const groupTag = "aws:autoscaling:groupName"

// groupInstances are the instances of the stack's Auto Scaling groups
// that have not ended, by id, with their group's logical id.
func (p *Proxy) groupInstances(ctx context.Context, region, stack string) (map[string]string, error) {
	resources, err := p.stackResources(ctx, region, stack)
	if err != nil {
		return nil, err
	}
	groups := map[string]string{} // group name → logical id
	for _, r := range resources {
		if aws.ToString(r.ResourceType) == "AWS::AutoScaling::AutoScalingGroup" && r.PhysicalResourceId != nil {
			groups[*r.PhysicalResourceId] = aws.ToString(r.LogicalResourceId)
		}
	}
	out := map[string]string{}
	if len(groups) == 0 {
		return out, nil
	}
	var names []string
	for name := range groups {
		names = append(names, name)
	}
	pages := ec2.NewDescribeInstancesPaginator(p.moto.in(region).EC2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + groupTag), Values: names},
	}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing the instances of stack %s's Auto Scaling groups: %w", stack, err)
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				if in.State != nil && in.State.Name == ec2types.InstanceStateNameTerminated {
					continue
				}
				for _, t := range in.Tags {
					if aws.ToString(t.Key) == groupTag {
						out[aws.ToString(in.InstanceId)] = groups[aws.ToString(t.Value)]
					}
				}
			}
		}
	}
	return out, nil
}

// tagGroupInstances gives the instances of the stack's Auto Scaling
// groups the aws:cloudformation:* tags CloudFormation's groups pass on to
// them.
func (p *Proxy) tagGroupInstances(ctx context.Context, st *stackRecord) {
	instances, err := p.groupInstances(ctx, st.region, st.id)
	if err != nil {
		p.log.Warn("finding the instances of a stack's Auto Scaling groups", "stack", st.name, "err", err)
		return
	}
	for id, logicalID := range instances {
		_, err := p.moto.in(st.region).EC2.CreateTags(ctx, &ec2.CreateTagsInput{
			Resources: []string{id},
			Tags: []ec2types.Tag{
				{Key: aws.String("aws:cloudformation:logical-id"), Value: aws.String(logicalID)},
				{Key: aws.String("aws:cloudformation:stack-name"), Value: aws.String(st.name)},
				{Key: aws.String("aws:cloudformation:stack-id"), Value: aws.String(st.id)},
			},
		})
		if err != nil {
			p.log.Warn("tagging an Auto Scaling group's instance", "stack", st.name, "group", logicalID, "instance", id, "err", err)
		}
	}
}
