package filestore_test

import (
	"testing"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/testenv"
	"github.com/surgeml/surge/internal/filestore"
)

func TestContract(t *testing.T) {
	testenv.StoreContract(t, func(t *testing.T) events.Store {
		s, err := filestore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
