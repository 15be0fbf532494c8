// This file deploys a CDK cloud assembly (cdk.out) the way `cdk
// deploy` does, without the CDK CLI: it publishes the stack's file assets
// to the bootstrap bucket, uploads the template, creates the stack and
// waits for it, printing the stack's events as they come; and it destroys
// one. The emulator deploys with it into emulated AWS, so the emulated
// deployment is exactly the synthesized template.

package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Assembly is one stack of a cloud assembly.
type Assembly struct {
	Dir       string // the cloud assembly directory
	Artifact  string // the stack's artifact id
	StackName string // what CloudFormation calls it
	Template  string // path of its template
	Assets    string // path of its asset manifest, or ""
}

// ReadAssembly finds stack (an artifact id, or "" for the only stack) in
// the cloud assembly at dir.
func ReadAssembly(dir, stack string) (*Assembly, error) {
	var manifest struct {
		Artifacts map[string]struct {
			Type       string `json:"type"`
			Properties struct {
				TemplateFile string `json:"templateFile"`
				StackName    string `json:"stackName"`
				File         string `json:"file"`
			} `json:"properties"`
			Dependencies []string `json:"dependencies"`
		} `json:"artifacts"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the cloud assembly (run make synth): %w", err)
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	var stacks []string
	for id, a := range manifest.Artifacts {
		if a.Type == "aws:cloudformation:stack" {
			stacks = append(stacks, id)
		}
	}
	slices.Sort(stacks)
	switch {
	case stack == "" && len(stacks) == 1:
		stack = stacks[0]
	case stack == "" || !slices.Contains(stacks, stack):
		return nil, fmt.Errorf("cloud assembly %s: stack %q not among %v", dir, stack, stacks)
	}
	art := manifest.Artifacts[stack]
	a := &Assembly{Dir: dir, Artifact: stack, StackName: art.Properties.StackName, Template: filepath.Join(dir, art.Properties.TemplateFile)}
	if a.StackName == "" {
		a.StackName = stack
	}
	for _, dep := range art.Dependencies {
		if d := manifest.Artifacts[dep]; d.Type == "cdk:asset-manifest" {
			a.Assets = filepath.Join(dir, d.Properties.File)
		}
	}
	return a, nil
}

// Deployer deploys into one account and region.
type Deployer struct {
	CFN *cloudformation.Client
	S3  *s3.Client
	STS *sts.Client
	Log *slog.Logger
	// Poll is how often stack status is read [1s].
	Poll time.Duration
}

// Stack is a deployed stack.
type Stack struct {
	ID, Name string
	Outputs  map[string]string
}

// target is where assets go: the account and region the clients speak
// for, as `cdk bootstrap` set them up.
func (d *Deployer) target(ctx context.Context) (account, region string, err error) {
	id, err := d.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", "", fmt.Errorf("finding the account: %w", err)
	}
	return aws.ToString(id.Account), d.S3.Options().Region, nil
}

// Publish uploads the assembly's file assets where its template expects
// them, creating the bootstrap bucket if this account has none (the
// emulated account starts empty; on AWS `cdk bootstrap` makes it), and the
// template itself, whose URL it returns: CloudFormation takes templates
// over 51,200 bytes only from S3.
func (d *Deployer) Publish(ctx context.Context, a *Assembly) (templateURL string, err error) {
	account, region, err := d.target(ctx)
	if err != nil {
		return "", err
	}
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
	if a.Assets != "" {
		b, err := os.ReadFile(a.Assets)
		if err != nil {
			return "", err
		}
		if err := json.Unmarshal(b, &manifest); err != nil {
			return "", fmt.Errorf("reading %s: %w", a.Assets, err)
		}
	}
	vars := strings.NewReplacer("${AWS::AccountId}", account, "${AWS::Region}", region, "${AWS::Partition}", "aws")
	bucket := vars.Replace("cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}")
	if err := d.ensureBucket(ctx, bucket, region); err != nil {
		return "", err
	}
	for _, id := range slices.Sorted(maps.Keys(manifest.Files)) {
		f := manifest.Files[id]
		body, err := readAsset(filepath.Join(a.Dir, f.Source.Path), f.Source.Packaging)
		if err != nil {
			return "", fmt.Errorf("asset %s: %w", id, err)
		}
		for _, dst := range f.Destinations {
			b, key := vars.Replace(dst.BucketName), vars.Replace(dst.ObjectKey)
			if b != bucket {
				if err := d.ensureBucket(ctx, b, region); err != nil {
					return "", err
				}
			}
			if _, err := d.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &b, Key: &key, Body: bytes.NewReader(body)}); err != nil {
				return "", fmt.Errorf("uploading asset %s to s3://%s/%s: %w", id, b, key, err)
			}
			d.Log.Info("published asset", "asset", f.Source.Path, "bytes", len(body), "to", "s3://"+b+"/"+key)
		}
	}
	template, err := os.ReadFile(a.Template)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(template)
	key := "templates/" + a.StackName + "-" + hex.EncodeToString(sum[:8]) + ".json"
	if _, err := d.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(template)}); err != nil {
		return "", fmt.Errorf("uploading the template: %w", err)
	}
	return "https://s3." + region + ".amazonaws.com/" + bucket + "/" + key, nil
}

func (d *Deployer) ensureBucket(ctx context.Context, bucket, region string) error {
	if _, err := d.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err == nil {
		return nil
	}
	in := &s3.CreateBucketInput{Bucket: &bucket}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	if _, err := d.S3.CreateBucket(ctx, in); err != nil {
		return fmt.Errorf("creating the asset bucket %s: %w", bucket, err)
	}
	return nil
}

// readAsset is a file asset's bytes; a directory is zipped, as cdk-assets
// does.
func readAsset(path, packaging string) ([]byte, error) {
	if packaging != "zip" {
		return os.ReadFile(path)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		h.Name, h.Method = filepath.ToSlash(rel), zip.Deflate
		w, err := zw.CreateHeader(h)
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
	return buf.Bytes(), err
}

// Deploy publishes the assembly and creates its stack, waiting until
// CloudFormation is done.
func (d *Deployer) Deploy(ctx context.Context, a *Assembly) (*Stack, error) {
	url, err := d.Publish(ctx, a)
	if err != nil {
		return nil, err
	}
	out, err := d.CFN.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    &a.StackName,
		TemplateURL:  &url,
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam, cftypes.CapabilityCapabilityAutoExpand},
	})
	if err != nil {
		return nil, fmt.Errorf("creating stack %s: %w", a.StackName, err)
	}
	d.Log.Info("creating stack", "stack", a.StackName, "id", aws.ToString(out.StackId))
	st, err := d.wait(ctx, aws.ToString(out.StackId), cftypes.StackStatusCreateComplete)
	if err != nil {
		return nil, fmt.Errorf("creating stack %s: %w", a.StackName, err)
	}
	return st, nil
}

// Destroy deletes the stack and waits until CloudFormation is done.
func (d *Deployer) Destroy(ctx context.Context, stackName string) error {
	out, err := d.CFN.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &stackName})
	if err != nil || len(out.Stacks) == 0 {
		return fmt.Errorf("finding stack %s: %w", stackName, err)
	}
	id := aws.ToString(out.Stacks[0].StackId)
	if _, err := d.CFN.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: &id}); err != nil {
		return fmt.Errorf("deleting stack %s: %w", stackName, err)
	}
	d.Log.Info("deleting stack", "stack", stackName, "id", id)
	if _, err := d.wait(ctx, id, cftypes.StackStatusDeleteComplete); err != nil {
		return fmt.Errorf("deleting stack %s: %w", stackName, err)
	}
	return nil
}

// wait polls the stack until it leaves the in-progress states, logging
// each new event, and fails unless it ends in want.
func (d *Deployer) wait(ctx context.Context, id string, want cftypes.StackStatus) (*Stack, error) {
	poll := d.Poll
	if poll <= 0 {
		poll = time.Second
	}
	seen := map[string]bool{}
	for {
		out, err := d.CFN.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &id})
		if err != nil {
			if want == cftypes.StackStatusDeleteComplete && strings.Contains(err.Error(), "does not exist") {
				return nil, nil
			}
			return nil, err
		}
		if len(out.Stacks) == 0 {
			return nil, errors.New("the stack is gone")
		}
		st := out.Stacks[0]
		d.events(ctx, id, seen)
		status := st.StackStatus
		if !strings.HasSuffix(string(status), "_IN_PROGRESS") {
			if status != want {
				return nil, fmt.Errorf("stack is %s: %s", status, aws.ToString(st.StackStatusReason))
			}
			s := &Stack{ID: id, Name: aws.ToString(st.StackName), Outputs: map[string]string{}}
			for _, o := range st.Outputs {
				s.Outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
			}
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stack still %s: %w", status, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// events logs the stack's failure events not logged yet; progress beyond
// that is the stack's status.
func (d *Deployer) events(ctx context.Context, id string, seen map[string]bool) {
	out, err := d.CFN.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: &id})
	if err != nil {
		return
	}
	for _, e := range slices.Backward(out.StackEvents) {
		key := aws.ToString(e.EventId)
		if seen[key] {
			continue
		}
		seen[key] = true
		if strings.HasSuffix(string(e.ResourceStatus), "_FAILED") {
			d.Log.Warn("stack event", "resource", aws.ToString(e.LogicalResourceId), "status", e.ResourceStatus, "reason", aws.ToString(e.ResourceStatusReason))
		}
	}
}
