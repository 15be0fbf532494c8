package moto

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func s3Client(p *Proxy, caller string) *s3.Client {
	return s3.NewFromConfig(sdkConfig(p, caller), func(o *s3.Options) { o.UsePathStyle = true })
}

func TestTakenBucketNames(t *testing.T) {
	p := start(t, ProxyConfig{TakenBucketNames: []string{"surge-in-bucket"}})
	c := s3Client(p, "tester")
	ctx := context.Background()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("surge-in-bucket")})
	code, msg, status := apiError(t, err)
	if code != "BucketAlreadyExists" || status != http.StatusConflict || msg != bucketTakenMessage {
		t.Errorf("taken name: %s (%d) %q", code, status, msg)
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("x-surge-in-bucket")}); err != nil {
		t.Errorf("a free name: %v", err)
	}
}

func TestFailDownloads(t *testing.T) {
	p := start(t, ProxyConfig{})
	ctx := context.Background()
	owner := s3Client(p, "owner")
	if _, err := owner.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("assets")}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("assets"), Key: aws.String("bin/worker"), Body: strings.NewReader("ELF")}); err != nil {
		t.Fatal(err)
	}
	instance := s3Client(p, "i-0123456789abcdef0")
	get := func(c *s3.Client) error {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("assets"), Key: aws.String("bin/worker")})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		body, _ := io.ReadAll(out.Body)
		if string(body) != "ELF" {
			t.Errorf("read %q", body)
		}
		return nil
	}
	head := func(c *s3.Client) error {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("assets"), Key: aws.String("bin/worker")})
		return err
	}
	p.FailDownloads("i-0123456789abcdef0", true)
	if code, msg, status := apiError(t, get(instance)); code != "AccessDenied" || status != http.StatusForbidden || msg != "Access Denied" {
		t.Errorf("GetObject by a failing caller: %s (%d) %q", code, status, msg)
	}
	if _, _, status := apiError(t, head(instance)); status != http.StatusForbidden {
		t.Errorf("HeadObject by a failing caller: %d", status)
	}
	if _, err := instance.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("assets")}); err != nil {
		t.Errorf("listing is not a download: %v", err)
	}
	if err := get(owner); err != nil {
		t.Errorf("another caller: %v", err)
	}
	p.FailDownloads("i-0123456789abcdef0", false)
	if err := get(instance); err != nil {
		t.Errorf("after FailDownloads(false): %v", err)
	}
	if err := head(instance); err != nil {
		t.Errorf("after FailDownloads(false): %v", err)
	}
}
