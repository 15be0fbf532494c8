package embedded_test

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/surgeml/surge/internal/embedded"
)

// TestMain lets the test binary stand in for the other processes the tests
// need: a second lock holder, a queue consumer, or a worker launched by the
// process fleet, which reports through a Reporter like the real worker and
// obeys SIGTERM but holds "messages" on command instead of running a model.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("DIRLOCK_CHILD_DIR") != "":
		lockChild(os.Getenv("DIRLOCK_CHILD_DIR"))
	case os.Getenv("SQLITEQUEUE_CHILD_DIR") != "":
		hangAfter, _ := strconv.Atoi(os.Getenv("SQLITEQUEUE_CHILD_HANG_AFTER"))
		os.Exit(queueChild(os.Getenv("SQLITEQUEUE_CHILD_DIR"), os.Getenv("SQLITEQUEUE_CHILD_LOG"), hangAfter))
	case os.Getenv("PROCFLEET_STANDIN") != "":
		standIn()
		return
	}
	os.Exit(m.Run())
}

func standIn() {
	r := embedded.NewReporter(os.Getenv(embedded.EnvStatusFile))
	sigs := make(chan os.Signal, 1)
	if os.Getenv("PROCFLEET_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	if os.Getenv("PROCFLEET_NEVER_READY") != "" {
		// A worker that never loads its model, until told to leave.
		<-sigs
		os.Exit(0)
	}
	r.Ready()
	hold := filepath.Join(os.Getenv("PROCFLEET_DIR"), os.Getenv(embedded.EnvInstance)+".hold")
	held := 0
	for {
		_, err := os.Stat(hold)
		if want := map[bool]int{true: 1, false: 0}[err == nil]; want != held {
			held = want
			r.Held(held)
		}
		select {
		case <-sigs:
			// Draining: finish the held message first.
			for held > 0 {
				if _, err := os.Stat(hold); err != nil {
					held = 0
				}
				time.Sleep(10 * time.Millisecond)
			}
			os.Exit(0)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
