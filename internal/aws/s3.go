// Object store on Amazon S3.

package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/surgeml/surge/events"
)

// Bucket is one bucket.
type Bucket struct {
	client *s3.Client
	bucket string
}

var _ events.Store = (*Bucket)(nil)

// NewBucket uses bucket through client.
func NewBucket(client *s3.Client, bucket string) *Bucket {
	return &Bucket{client: client, bucket: bucket}
}

func (s *Bucket) check(key string) error {
	if !events.ValidKey(key) {
		return fmt.Errorf("bucket %s: refusing unsanitised key %q", s.bucket, key)
	}
	return nil
}

// Put implements events.Store. S3 replaces objects atomically.
func (s *Bucket) Put(ctx context.Context, key string, body []byte) error {
	if err := s.check(key); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      &s.bucket,
		Key:         &key,
		Body:        bytes.NewReader(body),
		ContentType: sdk.String(http.DetectContentType(body)),
	})
	if err != nil {
		return fmt.Errorf("writing s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Get implements events.Store.
func (s *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.check(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	var missing *types.NoSuchKey
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", s.bucket, key, events.ErrNoObject)
	}
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", s.bucket, key, err)
	}
	return body, nil
}

// Delete implements events.Store.
func (s *Bucket) Delete(ctx context.Context, key string) error {
	if err := s.check(key); err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		return fmt.Errorf("deleting s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// List implements events.Store.
func (s *Bucket) List(ctx context.Context) ([]string, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s: %w", s.bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, sdk.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// CreateBucket makes the bucket, encrypted and closed to the public. On AWS the
// CDK stack creates the buckets; CreateBucket is for emulated environments and
// tests.
func CreateBucket(ctx context.Context, client *s3.Client, bucket string) (*Bucket, error) {
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if !errors.As(err, &owned) {
			return nil, fmt.Errorf("creating bucket %s: %w", bucket, err)
		}
	}
	if _, err := client.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
		Bucket: &bucket,
		PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{
			BlockPublicAcls: sdk.Bool(true), BlockPublicPolicy: sdk.Bool(true),
			IgnorePublicAcls: sdk.Bool(true), RestrictPublicBuckets: sdk.Bool(true),
		},
	}); err != nil {
		return nil, fmt.Errorf("closing bucket %s to the public: %w", bucket, err)
	}
	if _, err := client.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
		Bucket: &bucket,
		ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{
			Rules: []types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &types.ServerSideEncryptionByDefault{SSEAlgorithm: types.ServerSideEncryptionAes256}}},
		},
	}); err != nil {
		return nil, fmt.Errorf("encrypting bucket %s: %w", bucket, err)
	}
	return NewBucket(client, bucket), nil
}
