package embedded_test

import (
	"testing"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/testenv"
)

func TestBucketContract(t *testing.T) {
	testenv.StoreContract(t, func(t *testing.T) events.Store {
		s, err := embedded.OpenBucket(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
