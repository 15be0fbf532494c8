package emulate

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
)

// fakeIMDS is a stand-in for one instance's metadata service, serving
// IMDSv2 only (a session token first, as the launch template requires) and
// just what a worker asks: its instance id and Name tag. No real metadata
// service can run here; this one is named and used only by the emulator.
type fakeIMDS struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	tokens map[string]bool
}

func startIMDS(id, name string) (*fakeIMDS, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &fakeIMDS{url: "http://" + ln.Addr().String() + "/", tokens: map[string]bool{}}
	meta := map[string]string{
		"/latest/meta-data/instance-id":        id,
		"/latest/meta-data/tags/instance/Name": name,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		ttl := r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds")
		if ttl == "" {
			http.Error(w, "missing TTL", http.StatusBadRequest)
			return
		}
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", ttl)
		b := make([]byte, 16)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		m.mu.Lock()
		m.tokens[tok] = true
		m.mu.Unlock()
		w.Write([]byte(tok))
	})
	mux.HandleFunc("GET /latest/meta-data/", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		ok := m.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
		m.mu.Unlock()
		if !ok {
			http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
			return
		}
		v, found := meta[strings.TrimSuffix(r.URL.Path, "/")]
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(v))
	})
	m.srv = &http.Server{Handler: mux}
	go m.srv.Serve(ln)
	return m, nil
}

func (m *fakeIMDS) close() { m.srv.Close() }
