package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/surgeml/surge/internal/awscfg"
	"github.com/surgeml/surge/internal/motoserver"
)

// motoAccount is the account moto pretends to be.
const motoAccount = "123456789012"

// The synthesized template deploys into moto's CloudFormation once the
// assets are where the template says, as `cdk deploy` would put them.
// (moto skips the queue and bucket policies, which it does not model.)
func TestDeploysToEmulatedCloudFormation(t *testing.T) {
	_, _, outdir := synth(t)
	ctx := context.Background()
	moto, err := motoserver.Start(ctx, filepath.Join(t.TempDir(), "moto.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer moto.Stop()
	c, err := awscfg.Load(ctx, moto.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	uploadAssets(t, c, outdir)

	template, err := os.ReadFile(filepath.Join(outdir, "Surge.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	cf := cloudformation.NewFromConfig(c.Config)
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String("surge"),
		TemplateBody: aws.String(string(template)),
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam},
	}); err != nil {
		t.Fatal(err)
	}
	var stack cftypes.Stack
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("surge")})
		if err != nil {
			t.Fatal(err)
		}
		stack = out.Stacks[0]
		if !strings.HasSuffix(string(stack.StackStatus), "_IN_PROGRESS") || time.Now().After(deadline) {
			break
		}
	}
	if stack.StackStatus != cftypes.StackStatusCreateComplete {
		events, _ := cf.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String("surge")})
		for _, e := range events.StackEvents {
			if strings.Contains(string(e.ResourceStatus), "FAILED") {
				t.Logf("%s %s: %s", aws.ToString(e.LogicalResourceId), e.ResourceStatus, aws.ToString(e.ResourceStatusReason))
			}
		}
		t.Fatalf("stack is %s: %s", stack.StackStatus, aws.ToString(stack.StackStatusReason))
	}
	outputs := map[string]string{}
	for _, o := range stack.Outputs {
		outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	t.Logf("CREATE_COMPLETE; outputs %v", outputs)

	// What the template made is what the code looks for.
	q, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("surge-req-queue")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameMaximumMessageSize, sqstypes.QueueAttributeNameRedrivePolicy},
	})
	if err != nil || attrs.Attributes["MaximumMessageSize"] != "1024" || !strings.Contains(attrs.Attributes["RedrivePolicy"], "surge-req-dlq") {
		t.Fatalf("request queue attributes %v, %v", attrs, err)
	}
	for _, b := range []string{"surge-in-bucket", "surge-out-bucket"} {
		if _, err := c.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	lt, err := c.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{"surge-worker"}})
	if err != nil || len(lt.LaunchTemplates) != 1 {
		t.Fatalf("worker launch template: %v, %v", lt, err)
	}
	web, err := c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:Name"), Values: []string{"web-instance"}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil || len(web.Reservations) != 1 {
		t.Fatalf("web-instance: %v, %v", web, err)
	}
	if outputs["InputBucketName"] != "surge-in-bucket" || !strings.HasPrefix(outputs["WebUrl"], "http://") {
		t.Fatalf("outputs %v", outputs)
	}
}

// uploadAssets publishes the cloud assembly's file assets to the bucket
// and keys the template names, zipping directories as cdk-assets does.
func uploadAssets(t *testing.T, c *awscfg.Clients, outdir string) {
	t.Helper()
	ctx := context.Background()
	var manifest struct {
		Files map[string]struct {
			Source struct {
				Path      string `json:"path"`
				Packaging string `json:"packaging"`
			} `json:"source"`
			Destinations map[string]struct {
				BucketName string `json:"bucketName"`
				ObjectKey  string `json:"objectKey"`
			} `json:"destinations"`
		} `json:"files"`
	}
	b, err := os.ReadFile(filepath.Join(outdir, "Surge.assets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	created := map[string]bool{}
	for _, f := range manifest.Files {
		for _, d := range f.Destinations {
			bucket := strings.NewReplacer("${AWS::AccountId}", motoAccount, "${AWS::Region}", motoserver.Region).Replace(d.BucketName)
			if !created[bucket] {
				if _, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
					t.Fatal(err)
				}
				created[bucket] = true
			}
			body := readAsset(t, filepath.Join(outdir, f.Source.Path), f.Source.Packaging)
			if _, err := c.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(d.ObjectKey), Body: bytes.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func readAsset(t *testing.T, path, packaging string) []byte {
	t.Helper()
	if packaging != "zip" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		w, err := zw.Create(rel)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
