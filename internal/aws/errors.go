package aws

import (
	"context"
	"errors"
	"maps"
	"slices"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
)

// EC2 error codes that make a launch a ceiling rather than a failure, from
// AWS's "Error codes for the Amazon EC2 API".
var (
	// quotaCodes are account limits: no other subnet or zone helps, so
	// they end the whole launch.
	quotaCodes = map[string]bool{
		"VcpuLimitExceeded":     true, // running On-Demand vCPUs
		"InstanceLimitExceeded": true, // running instances
		"VolumeLimitExceeded":   true, // EBS storage, for the root volumes
		"MaxIOPSLimitExceeded":  true, // EBS IOPS in the Region
		"PendingVerification":   true, // a new account, until AWS verifies it
	}
	// zoneCapacityCodes are what one zone or subnet cannot give: another
	// may.
	zoneCapacityCodes = map[string]bool{
		"InsufficientInstanceCapacity":      true, // no instances of the type in the zone
		"InsufficientVolumeCapacity":        true, // no EBS capacity for the root volume
		"InsufficientFreeAddressesInSubnet": true, // the subnet's private addresses are used up
		// The type is not offered in the zone at all (not every zone has
		// every type: us-east-1e lacks many), so the launch moves on as
		// for capacity. Other unsupported requests fail in every zone and
		// end as a ceiling with this code, logged and backed off alike.
		// https://repost.aws/knowledge-center/ec2-instance-type-not-supported-az-error
		"Unsupported": true,
	}
)

// noRetryCodes are the codes a RunInstances call must not retry: EC2 sends
// InsufficientInstanceCapacity with HTTP 500, which the SDK's standard
// retryer would repeat three times in the same zone when the answer is to
// try another.
func noRetryCodes() []string {
	return slices.Sorted(maps.Keys(zoneCapacityCodes))
}

// withoutRetryOn is an operation option: the client's retryer, except
// that errors with the given codes are final.
func withoutRetryOn(codes ...string) func(*ec2.Options) {
	return func(o *ec2.Options) {
		if o.Retryer != nil {
			o.Retryer = &finalCodes{RetryerV2: asRetryerV2(o.Retryer), codes: codes}
		}
	}
}

type finalCodes struct {
	sdk.RetryerV2
	codes []string
}

func (r *finalCodes) IsErrorRetryable(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && slices.Contains(r.codes, ae.ErrorCode()) {
		return false
	}
	return r.RetryerV2.IsErrorRetryable(err)
}

func asRetryerV2(r sdk.Retryer) sdk.RetryerV2 {
	if v2, ok := r.(sdk.RetryerV2); ok {
		return v2
	}
	return retryerV2{r}
}

// retryerV2 adapts a retryer from before RetryerV2, as the SDK's own
// wrappers do.
type retryerV2 struct{ sdk.Retryer }

func (r retryerV2) GetAttemptToken(context.Context) (func(error) error, error) {
	return r.GetInitialToken(), nil
}
