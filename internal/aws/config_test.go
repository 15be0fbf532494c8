package aws_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/surgeml/surge/internal/aws"
	"github.com/surgeml/surge/internal/moto"
)

// countingProxy is an HTTP/1.1 endpoint with keep-alives, as AWS's are,
// in front of moto_server (which closes every connection): it counts the
// connections clients open, and holds each call for delay, as a network
// round trip would, so that calls made together are in flight together.
type countingProxy struct {
	url      string
	accepted atomic.Int32
}

func newCountingProxy(t *testing.T, target *url.URL, delay time.Duration) *countingProxy {
	t.Helper()
	p := &countingProxy{}
	upstream := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		upstream.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.accepted.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// Calls made together reuse the connections of the calls made together
// before them, beyond the SDK's default of 10 kept per host: a burst of
// queue calls opens connections once, not every time.
func TestConnectionsAreReused(t *testing.T) {
	moto.Clients(t) // skips under -short
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCountingProxy(t, target, 50*time.Millisecond)
	ctx := context.Background()
	clients, err := aws.LoadClients(ctx, config.WithBaseEndpoint(proxy.url))
	if err != nil {
		t.Fatal(err)
	}
	q, err := aws.CreateQueue(ctx, clients.SQS, aws.QueueSpec{Name: fmt.Sprintf("reuse-%d", serial.Add(1)), Visibility: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const together = 24
	burst := func() {
		var wg sync.WaitGroup
		for range together {
			wg.Go(func() {
				if _, err := q.Counts(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	burst()
	first := proxy.accepted.Load()
	burst()
	burst()
	if later := proxy.accepted.Load() - first; later != 0 {
		t.Errorf("the first burst of %d calls opened %d connections; the next two opened %d more, want none", together, first, later)
	}
	t.Logf("%d connections for %d calls", proxy.accepted.Load(), 3*together+1)
}
