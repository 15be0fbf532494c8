package embedded_test

import (
	"testing"

	"github.com/surgeml/surge/events"
	"github.com/surgeml/surge/internal/embedded"
	"github.com/surgeml/surge/internal/testenv"
)

func TestReplyQueuesContract(t *testing.T) {
	testenv.ReplyQueuesContract(t, func(t *testing.T) testenv.RepliesSetup {
		dir, names := t.TempDir(), events.NamesFor("contract")
		mine, other := embedded.NewReplyQueues(dir, names), embedded.NewReplyQueues(dir, names)
		t.Cleanup(func() { mine.Close(); other.Close() })
		return testenv.RepliesSetup{Names: names, Mine: mine, Other: other}
	})
}
