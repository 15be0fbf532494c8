package moto

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// deleteNetworkPlumbing deletes a stack's route tables and internet
// gateways before moto deletes the rest. moto's CloudFormation cannot
// delete route tables or detach gateways, so its VPCs are left with
// dependencies and every stack with a VPC fails to delete (checked with
// moto 5.2.1); CloudFormation deletes them like any other resource.
func (p *Proxy) deleteNetworkPlumbing(ctx context.Context, st *stackRecord) error {
	resources, err := p.stackResources(ctx, st.region, st.id)
	if err != nil {
		return err
	}
	m := p.moto.in(st.region).EC2
	byType := map[string][]string{}
	for _, r := range resources {
		if r.PhysicalResourceId != nil {
			byType[aws.ToString(r.ResourceType)] = append(byType[aws.ToString(r.ResourceType)], *r.PhysicalResourceId)
		}
	}
	if ids := byType["AWS::EC2::RouteTable"]; len(ids) > 0 {
		tables, err := m.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: ids})
		if err != nil {
			return fmt.Errorf("describing route tables: %w", err)
		}
		for _, rt := range tables.RouteTables {
			if err := deleteRouteTable(ctx, m, rt); err != nil {
				return err
			}
		}
	}
	for _, igw := range byType["AWS::EC2::InternetGateway"] {
		out, err := m.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{InternetGatewayIds: []string{igw}})
		if err != nil {
			if strings.Contains(err.Error(), "NotFound") {
				continue
			}
			return fmt.Errorf("describing internet gateway %s: %w", igw, err)
		}
		for _, g := range out.InternetGateways {
			for _, a := range g.Attachments {
				if _, err := m.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: &igw, VpcId: a.VpcId}); err != nil {
					return fmt.Errorf("detaching internet gateway %s: %w", igw, err)
				}
			}
		}
		if _, err := m.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: &igw}); err != nil {
			return fmt.Errorf("deleting internet gateway %s: %w", igw, err)
		}
	}
	return nil
}

func deleteRouteTable(ctx context.Context, m *ec2.Client, rt types.RouteTable) error {
	for _, a := range rt.Associations {
		if aws.ToBool(a.Main) {
			return nil // a VPC's main table goes with the VPC
		}
		if _, err := m.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: a.RouteTableAssociationId}); err != nil {
			return fmt.Errorf("disassociating route table %s: %w", aws.ToString(rt.RouteTableId), err)
		}
	}
	if _, err := m.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: rt.RouteTableId}); err != nil {
		return fmt.Errorf("deleting route table %s: %w", aws.ToString(rt.RouteTableId), err)
	}
	return nil
}
