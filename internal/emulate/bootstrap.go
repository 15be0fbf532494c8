package emulate

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/backend"
	"github.com/surgeml/surge/internal/ec2fleet"
	"github.com/surgeml/surge/internal/s3store"
	"github.com/surgeml/surge/internal/sqsqueue"
	"github.com/surgeml/surge/internal/userdata"
)

// Where user data puts the worker's files on an instance; the emulator
// maps them to the local copies.
const (
	instanceORT     = "/opt/surge/lib/libonnxruntime.so.1"
	instanceModel   = "/opt/surge/model/model.onnx"
	instanceGallery = "/opt/surge/gallery/gallery.json"
)

// resources are what bootstrap made.
type resources struct {
	names    backend.Names
	requests *sqsqueue.Queue
	userData string
}

// bootstrap creates, by PROTOCOL.md's names, what the CDK stack creates on
// AWS: the request queue (1024-byte messages, a dead-letter queue), the
// response queue, both buckets, and the workers' launch template with
// IMDSv2 required and the worker's configuration in its user data.
func bootstrap(ctx context.Context, c *awscfg.Clients, cfg Config) (*resources, error) {
	names := backend.NamesFor(cfg.Prefix)
	dlq, err := sqsqueue.Create(ctx, c.SQS, sqsqueue.Spec{Name: names.RequestDeadLetters, Visibility: cfg.Visibility})
	if err != nil {
		return nil, err
	}
	req, err := sqsqueue.Create(ctx, c.SQS, sqsqueue.Spec{
		Name: names.RequestQueue, Visibility: cfg.Visibility, MaxMessageSize: 1024, DeadLetter: dlq, MaxReceives: cfg.MaxReceives,
	})
	if err != nil {
		return nil, err
	}
	if _, err := sqsqueue.Create(ctx, c.SQS, sqsqueue.Spec{Name: names.ResponseQueue, Visibility: 30 * time.Second}); err != nil {
		return nil, err
	}
	for _, b := range []string{names.InputBucket, names.OutputBucket} {
		if _, err := s3store.Create(ctx, c.S3, b); err != nil {
			return nil, err
		}
	}
	env := map[string]string{
		"SURGE_BACKEND":       "aws",
		"SURGE_PREFIX":        cfg.Prefix,
		"SURGE_ORT_LIB":       instanceORT,
		"SURGE_MODEL":         instanceModel,
		"SURGE_VISIBILITY":    cfg.Visibility.String(),
		"SURGE_MAX_RECEIVES":  strconv.Itoa(cfg.MaxReceives),
		"SURGE_CONCURRENCY":   strconv.Itoa(cfg.Concurrency),
		"SURGE_IDLE_SHUTDOWN": cfg.IdleShutdown.String(),
	}
	if cfg.Files.Gallery != "" {
		env["SURGE_GALLERY"] = instanceGallery
	}
	script, err := userdata.Render(userdata.Service{Name: "worker", Env: env})
	if err != nil {
		return nil, err
	}
	_, err = c.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(names.LaunchTemplate),
		LaunchTemplateData: &types.RequestLaunchTemplateData{
			ImageId:                           aws.String("ami-0123456789abcdef0"),
			InstanceType:                      types.InstanceTypeT3Small,
			InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
			MetadataOptions: &types.LaunchTemplateInstanceMetadataOptionsRequest{
				HttpTokens:           types.LaunchTemplateHttpTokensStateRequired,
				InstanceMetadataTags: types.LaunchTemplateInstanceMetadataTagsStateEnabled,
			},
			UserData: aws.String(base64.StdEncoding.EncodeToString([]byte(script))),
			TagSpecifications: []types.LaunchTemplateTagSpecificationRequest{{
				ResourceType: types.ResourceTypeInstance,
				Tags:         []types.Tag{{Key: aws.String(ec2fleet.TagFleet), Value: aws.String(names.Fleet)}},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating launch template %s: %w", names.LaunchTemplate, err)
	}
	return &resources{names: names, requests: req, userData: script}, nil
}

// templateUserData reads the launch template's user data back, as an
// instance booting from it would get it.
func templateUserData(ctx context.Context, c *awscfg.Clients, template string) (string, error) {
	out, err := c.EC2.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{
		LaunchTemplateName: &template, Versions: []string{"$Latest"},
	})
	if err != nil || len(out.LaunchTemplateVersions) == 0 || out.LaunchTemplateVersions[0].LaunchTemplateData == nil {
		return "", fmt.Errorf("reading launch template %s: %v", template, err)
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.LaunchTemplateVersions[0].LaunchTemplateData.UserData))
	if err != nil {
		return "", fmt.Errorf("launch template %s: user data is not base64: %w", template, err)
	}
	return string(raw), nil
}
