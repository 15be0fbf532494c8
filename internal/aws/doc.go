// Package aws holds every adapter to Amazon Web Services, each behind an
// interface from package events: SQS queues (sqs.go), S3 buckets (s3.go),
// the worker fleet on EC2 (ec2.go, with idempotent launches in token.go
// and readiness tags in ready.go), the results table in DynamoDB
// (dynamodb.go), the SDK configuration they share (config.go) and an
// instance's identity from IMDSv2 (imds.go).
//
// The SDK's own aws package is imported as sdk.
package aws
