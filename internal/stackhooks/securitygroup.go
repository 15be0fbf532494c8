package stackhooks

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// closeDefaultGroup revokes every rule of the VPC's default security
// group. AWS gives it an inbound rule admitting all traffic from its own
// members and outbound rules to anywhere; anything launched without a
// security group lands in it. Idempotent: a closed group is left alone.
func (h *Hook) closeDefaultGroup(ctx context.Context, log *slog.Logger) error {
	vpc := h.cfg.VPCID
	if vpc == "" {
		log.Info("no VPC given: default security group left as it is")
		return nil
	}
	out, err := h.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{vpc}},
		{Name: aws.String("group-name"), Values: []string{"default"}},
	}})
	if err != nil {
		return fmt.Errorf("finding the default security group of %s: %w", vpc, err)
	}
	if len(out.SecurityGroups) != 1 {
		return fmt.Errorf("finding the default security group of %s: %d groups named default", vpc, len(out.SecurityGroups))
	}
	group := aws.ToString(out.SecurityGroups[0].GroupId)
	ingress, egress, err := h.groupRules(ctx, group)
	if err != nil {
		return err
	}
	// By rule id: exact, where revoking by permissions must repeat each
	// rule's every field.
	if len(ingress) > 0 {
		if _, err := h.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: &group, SecurityGroupRuleIds: ingress}); err != nil && !ruleGone(err) {
			return fmt.Errorf("revoking the inbound rules of %s (default group of %s): %w", group, vpc, err)
		}
	}
	if len(egress) > 0 {
		if _, err := h.ec2.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: &group, SecurityGroupRuleIds: egress}); err != nil && !ruleGone(err) {
			return fmt.Errorf("revoking the outbound rules of %s (default group of %s): %w", group, vpc, err)
		}
	}
	// AWS recommends describing the group to confirm the rules are gone.
	ingressLeft, egressLeft, err := h.groupRules(ctx, group)
	if err != nil {
		return err
	}
	if left := append(ingressLeft, egressLeft...); len(left) > 0 {
		return fmt.Errorf("the default security group %s of %s still has rules %v after revoking them", group, vpc, left)
	}
	log.Info("default security group closed", "vpc", vpc, "group", group, "revokedIngress", ingress, "revokedEgress", egress)
	return nil
}

// groupRules lists a group's rule ids, inbound and outbound.
func (h *Hook) groupRules(ctx context.Context, group string) (ingress, egress []string, err error) {
	pages := ec2.NewDescribeSecurityGroupRulesPaginator(h.ec2, &ec2.DescribeSecurityGroupRulesInput{
		Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{group}}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("listing the rules of security group %s: %w", group, err)
		}
		for _, r := range page.SecurityGroupRules {
			if aws.ToBool(r.IsEgress) {
				egress = append(egress, aws.ToString(r.SecurityGroupRuleId))
			} else {
				ingress = append(ingress, aws.ToString(r.SecurityGroupRuleId))
			}
		}
	}
	return ingress, egress, nil
}

// ruleGone reports a revoke of a rule that another revoke (a concurrent
// or retried hook) removed first: the goal is met, and the describe that
// follows confirms the group is closed.
func ruleGone(err error) bool {
	switch errorKind(err) {
	case "InvalidPermission.NotFound", "InvalidSecurityGroupRuleId.NotFound":
		return true
	}
	return false
}
