package moto

import (
	"fmt"
	"html"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// serveS3 adds global bucket names taken by other accounts and callers
// whose object reads are denied. Requests are path-style (/bucket,
// /bucket/key), as every client with a custom endpoint sends them.
func (p *Proxy) serveS3(w http.ResponseWriter, r *http.Request, c call) bool {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket == "" {
		return false
	}
	switch {
	case r.Method == http.MethodPut && key == "" && r.URL.RawQuery == "":
		if slices.Contains(p.cfg.TakenBucketNames, bucket) {
			s3Error(w, r, http.StatusConflict, "BucketAlreadyExists", bucketTakenMessage, bucket)
			return true
		}
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && key != "" && isObjectRead(r):
		if p.failsDownloads(c.caller) {
			p.log.Info("S3 read denied", "caller", c.caller, "bucket", bucket, "key", key)
			s3Error(w, r, http.StatusForbidden, "AccessDenied", "Access Denied", "")
			return true
		}
	}
	return false
}

const bucketTakenMessage = "The requested bucket name is not available. The bucket namespace is shared by all users of the system. " +
	"Please select a different name and try again."

// isObjectRead tells GetObject and HeadObject from the other GETs on a key
// (?acl, ?tagging, ?attributes...): those carry a subresource.
func isObjectRead(r *http.Request) bool {
	for k := range r.URL.Query() {
		switch {
		case k == "versionId", k == "partNumber", strings.HasPrefix(k, "response-"), strings.HasPrefix(k, "X-Amz-"), k == "x-id":
		default:
			return false
		}
	}
	return true
}

// s3Error answers in S3's REST error format (no body for HEAD, as S3).
func s3Error(w http.ResponseWriter, r *http.Request, status int, code, message, bucket string) {
	id := strings.ToUpper(strings.ReplaceAll(requestID(), "-", ""))[:16]
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>" + code + "</Code><Message>" + html.EscapeString(message) + "</Message>"
	if bucket != "" {
		body += "<BucketName>" + html.EscapeString(bucket) + "</BucketName>"
	}
	body += fmt.Sprintf("<RequestId>%s</RequestId></Error>", id)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", id)
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write([]byte(body))
}
