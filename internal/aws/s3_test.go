package aws_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
	"github.com/surgeml/surge/internal/testenv"
)

// The adapter is tested against moto_server on loopback.

func TestBucketContract(t *testing.T) {
	testenv.StoreContract(t, func(t *testing.T) events.Store {
		s, err := aws.CreateBucket(context.Background(), moto.Clients(t).S3, fmt.Sprintf("contract-%d", serial.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
