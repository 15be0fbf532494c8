package emulate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// metadata is a stand-in for one instance's metadata service (no real one
// can run here). It serves IMDSv2 only, as the launch template requires: a
// session token first, then what the instance's programs ask: its id, Name
// tag, region and zone, and its role's credentials. The credentials'
// access key id is the instance id, which is how the emulated endpoint
// tells instances apart (to fail one's downloads, say).
type metadata struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	tokens map[string]bool
}

// instanceIdentity is what the metadata service knows about an instance.
type instanceIdentity struct {
	ID, Name, Region, Zone, Role string
}

func startMetadata(id instanceIdentity) (*metadata, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &metadata{url: "http://" + ln.Addr().String(), tokens: map[string]bool{}}
	values := map[string]string{
		"/latest/meta-data/instance-id":                         id.ID,
		"/latest/meta-data/tags/instance/Name":                  id.Name,
		"/latest/meta-data/placement/region":                    id.Region,
		"/latest/meta-data/placement/availability-zone":         id.Zone,
		"/latest/meta-data/iam/security-credentials":            id.Role,
		"/latest/meta-data/iam/security-credentials/":           id.Role,
		"/latest/meta-data/iam/security-credentials/" + id.Role: "",
	}
	identity, _ := json.Marshal(map[string]string{"instanceId": id.ID, "region": id.Region, "availabilityZone": id.Zone})
	values["/latest/dynamic/instance-identity/document"] = string(identity)
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
	mux.HandleFunc("GET /latest/", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		ok := m.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
		m.mu.Unlock()
		if !ok {
			http.Error(w, "IMDSv2 token required", http.StatusUnauthorized)
			return
		}
		path := r.URL.Path
		if path == "/latest/meta-data/iam/security-credentials/"+id.Role && id.Role != "" {
			json.NewEncoder(w).Encode(map[string]string{
				"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": time.Now().UTC().Format(time.RFC3339),
				"AccessKeyId": id.ID, "SecretAccessKey": "emulated", "Token": "emulated",
				"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
			})
			return
		}
		v, found := values[path]
		if !found {
			v, found = values[strings.TrimSuffix(path, "/")]
		}
		if !found || v == "" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(v))
	})
	m.srv = &http.Server{Handler: mux}
	go m.srv.Serve(ln)
	return m, nil
}

func (m *metadata) close() { m.srv.Close() }
