package moto

import (
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// adminPrefix is where the proxy's own endpoints live, beside the AWS
// APIs, so that anything that can reach the emulated cloud (a test, a
// user of make emulate, a boto3 script) can drive it.
const adminPrefix = "/_surge/"

func (p *Proxy) serveAdmin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, adminPrefix), "/") {
	case "clock":
		if r.Method == http.MethodPost {
			d, err := time.ParseDuration(q.Get("advance"))
			if err != nil || d < 0 {
				adminError(w, http.StatusBadRequest, "advance must be a positive duration such as 2h")
				return
			}
			p.clock.Advance(d)
			p.log.Info("clock advanced", "by", d, "now", p.clock.Now())
		}
		writeJSON(w, http.StatusOK, map[string]string{"now": p.clock.Now().UTC().Format(time.RFC3339)})
	case "ec2":
		if r.Method == http.MethodPost {
			if msg := p.setEC2(q); msg != "" {
				adminError(w, http.StatusBadRequest, msg)
				return
			}
		}
		p.mu.Lock()
		state := map[string]any{"vcpuQuota": p.vcpuQuota, "noCapacity": sortedKeys(p.noCapacity), "unsupported": sortedKeys(p.unsupported),
			"runInstancesDelay": p.runDelay.String()}
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, state)
	case "fail-downloads":
		if r.Method == http.MethodPost {
			caller := q.Get("caller")
			fail, err := strconv.ParseBool(q.Get("fail"))
			if caller == "" || err != nil {
				adminError(w, http.StatusBadRequest, "caller=<access key id>&fail=true|false")
				return
			}
			p.FailDownloads(caller, fail)
		}
		p.mu.Lock()
		state := map[string]any{"failing": sortedKeys(p.failCallers)}
		p.mu.Unlock()
		writeJSON(w, http.StatusOK, state)
	case "iam":
		if r.Method == http.MethodPost {
			caller := q.Get("caller")
			d, err := time.ParseDuration(q.Get("propagation"))
			_, badPattern := path.Match(caller, "")
			if caller == "" || badPattern != nil || err != nil || d < 0 {
				adminError(w, http.StatusBadRequest, "caller=<access key id pattern>&propagation=<duration, 0 to remove>")
				return
			}
			p.SetRolePropagation(caller, d)
		}
		writeJSON(w, http.StatusOK, map[string]any{"propagation": p.propagationState()})
	case "cfn-response":
		p.cfnResponse(w, r)
	default:
		adminError(w, http.StatusNotFound, "no such endpoint; see the awsproxy package documentation")
	}
}

// setEC2 applies the EC2 settings q gives, all or (when one is malformed,
// which it says) none.
func (p *Proxy) setEC2(q url.Values) string {
	var set []func()
	if q.Has("vcpuQuota") {
		n, err := strconv.Atoi(q.Get("vcpuQuota"))
		if err != nil || n < 0 {
			return "vcpuQuota must be a number of vCPUs (0: unlimited)"
		}
		set = append(set, func() { p.SetVCPUQuota(n) })
	}
	if q.Has("noCapacity") {
		set = append(set, func() { p.SetNoCapacity(strings.Split(q.Get("noCapacity"), ",")...) })
	}
	if q.Has("unsupported") {
		pairs := strings.Split(q.Get("unsupported"), ",")
		for _, pair := range pairs {
			if zone, typ, ok := strings.Cut(strings.TrimSpace(pair), ":"); pair != "" && (!ok || zone == "" || typ == "") {
				return "unsupported must be zone:type pairs such as us-east-1e:t3.small, comma-separated"
			}
		}
		set = append(set, func() { p.SetUnsupported(pairs...) })
	}
	if q.Has("runInstancesDelay") {
		d, err := time.ParseDuration(q.Get("runInstancesDelay"))
		if err != nil || d < 0 {
			return "runInstancesDelay must be a duration such as 2s (0: none)"
		}
		set = append(set, func() { p.SetRunInstancesDelay(d) })
	}
	for _, f := range set {
		f()
	}
	return ""
}

func adminError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
