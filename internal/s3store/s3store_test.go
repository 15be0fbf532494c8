package s3store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/surgeml/surge/internal/awstest"
	"github.com/surgeml/surge/internal/blob"
	"github.com/surgeml/surge/internal/blob/blobtest"
	"github.com/surgeml/surge/internal/s3store"
)

// The adapter is tested against moto_server on loopback.
func TestMain(m *testing.M) { awstest.Main(m) }

var serial atomic.Int32

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := s3store.Create(context.Background(), awstest.Clients(t).S3, fmt.Sprintf("contract-%d", serial.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
