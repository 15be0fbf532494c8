// This file tells an EC2 worker who it is, from the instance
// metadata service, version 2 only (session tokens; the launch template
// requires them).

package aws

import (
	"context"
	"fmt"
	"io"
	"strings"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// InstanceIdentity is what the instance metadata says about this instance.
type InstanceIdentity struct {
	ID   string // i-0123456789abcdef0
	Name string // its Name tag, or the ID when tags are not exposed
}

// LookupInstance asks IMDSv2. AWS_EC2_METADATA_SERVICE_ENDPOINT overrides where.
func LookupInstance(ctx context.Context, cfg sdk.Config) (InstanceIdentity, error) {
	client := imds.NewFromConfig(cfg, func(o *imds.Options) {
		o.EnableFallback = sdk.FalseTernary // never IMDSv1
	})
	id, err := get(ctx, client, "instance-id")
	if err != nil {
		return InstanceIdentity{}, fmt.Errorf("reading the instance id from IMDSv2: %w", err)
	}
	name, err := get(ctx, client, "tags/instance/Name")
	if err != nil || name == "" {
		name = id
	}
	return InstanceIdentity{ID: id, Name: name}, nil
}

func get(ctx context.Context, client *imds.Client, path string) (string, error) {
	out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return strings.TrimSpace(string(b)), err
}

// LookupInstanceID asks IMDSv2 for this instance's id, with the SDK's
// standard configuration.
func LookupInstanceID(ctx context.Context) (string, error) {
	c, err := LoadClients(ctx)
	if err != nil {
		return "", err
	}
	id, err := LookupInstance(ctx, c.Config)
	return id.ID, err
}
