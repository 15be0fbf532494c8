package filestore_test

import (
	"testing"

	"github.com/surgeml/surge/internal/blob"
	"github.com/surgeml/surge/internal/blob/blobtest"
	"github.com/surgeml/surge/internal/filestore"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
