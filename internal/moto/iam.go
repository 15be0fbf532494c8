package moto

import (
	"fmt"
	"net/http"
	"path"
	"time"
)

// A role's permissions reach every AWS endpoint some seconds after IAM
// has made or changed the role: until then its calls are refused as if
// the role lacked them. A stack's functions run as roles the same stack
// has just made, so their first calls can meet that.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency

// SetRolePropagation has calls from callers whose access key id matches
// pattern (path.Match: "lambda-*") refused for the first d after each
// such caller's first call, with the service's access-denied error; 0
// removes the pattern.
func (p *Proxy) SetRolePropagation(pattern string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d <= 0 {
		delete(p.propagation, pattern)
		return
	}
	p.propagation[pattern] = d
}

// propagating reports whether c's role is still propagating: its calls
// are refused. Its first call starts the clock.
func (p *Proxy) propagating(c call) bool {
	if c.caller == "" {
		return false
	}
	now := p.clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var longest time.Duration
	for pattern, d := range p.propagation {
		if ok, _ := path.Match(pattern, c.caller); ok {
			longest = max(longest, d)
		}
	}
	if longest == 0 {
		return false
	}
	first, seen := p.firstCall[c.caller]
	if !seen {
		first = now
		p.firstCall[c.caller] = now
	}
	return now.Before(first.Add(longest))
}

// propagationState is the admin endpoint's view of the patterns.
func (p *Proxy) propagationState() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]string{}
	for pattern, d := range p.propagation {
		out[pattern] = d.String()
	}
	return out
}

// deny refuses a call as its service refuses a role without the
// permission: EC2's UnauthorizedOperation, S3's AccessDenied, Lambda's
// AccessDeniedException (all 403). It reports false for the services it
// does not speak for, whose calls go through.
func (p *Proxy) deny(w http.ResponseWriter, r *http.Request, c call) bool {
	who := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", defaultAccount, c.caller, c.caller)
	switch c.service {
	case "ec2":
		form, _, err := readForm(r)
		if err != nil {
			return false
		}
		action := "ec2:" + form.Get("Action")
		ec2Error(w, http.StatusForbidden, "UnauthorizedOperation", fmt.Sprintf(
			"You are not authorized to perform this operation. User: %s is not authorized to perform: %s because no identity-based policy allows the %s action",
			who, action, action))
	case "s3":
		s3Error(w, r, http.StatusForbidden, "AccessDenied", "Access Denied", "")
	case "lambda":
		w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
		writeJSON(w, http.StatusForbidden, map[string]string{"Type": "User", "message": fmt.Sprintf(
			"User: %s is not authorized to perform: lambda:%s on resource: %s because no identity-based policy allows the action",
			who, r.Method, r.URL.Path)})
	default:
		return false
	}
	p.log.Info("call refused: the caller's role is still propagating", "caller", c.caller, "service", c.service)
	return true
}
