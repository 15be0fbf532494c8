package moto

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SQS refuses a queue name for 60 seconds after a queue of that name was
// deleted (QueueDeletedRecently), which moto does not: a destroy followed
// at once by a deploy of the same names fails on AWS.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteQueue.html

// QueueNameHeld is how long a deleted queue's name cannot be used again.
const QueueNameHeld = 60 * time.Second

const queueDeletedRecentlyMessage = "You must wait 60 seconds after deleting a queue before you can create another with the same name."

// deletedQueues remembers when queues were deleted, by region and name.
type deletedQueues struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (d *deletedQueues) deleted(region, name string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = map[string]time.Time{}
	}
	d.at[region+"/"+name] = at
}

// held tells whether a queue name is still held at now.
func (d *deletedQueues) held(region, name string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.at[region+"/"+name]
	return ok && now.Sub(at) < QueueNameHeld
}

// serveSQS holds deleted queues' names. Requests come in SQS's JSON
// protocol (X-Amz-Target: AmazonSQS.CreateQueue, today's SDKs) or its
// older Query protocol (Action=CreateQueue).
func (p *Proxy) serveSQS(w http.ResponseWriter, r *http.Request, c call) bool {
	action, params, err := sqsRequest(r)
	if err != nil {
		return false
	}
	switch action {
	case "CreateQueue":
		if name := params["QueueName"]; name != "" && p.sqs.held(c.region, name, p.clock.Now()) {
			p.log.Info("CreateQueue refused: name deleted recently", "queue", name)
			sqsError(w, r, "QueueDeletedRecently", queueDeletedRecentlyMessage)
			return true
		}
	case "DeleteQueue":
		answer, err := p.roundTrip(r, bodyOf(r))
		if err != nil {
			p.forwardFailed(w, "forwarding DeleteQueue", err)
			return true
		}
		if answer.status == http.StatusOK {
			p.sqs.deleted(c.region, queueName(params["QueueUrl"]), p.clock.Now())
		}
		answer.write(w)
		return true
	}
	return false
}

// sqsRequest reads an SQS request's action and its string parameters,
// leaving the body to be forwarded.
func sqsRequest(r *http.Request) (string, map[string]string, error) {
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		action, ok := strings.CutPrefix(target, "AmazonSQS.")
		if !ok {
			return "", nil, fmt.Errorf("not an SQS target: %s", target)
		}
		var params map[string]any
		if body := bodyOf(r); len(body) > 0 {
			if err := json.Unmarshal(body, &params); err != nil {
				return "", nil, err
			}
		}
		out := map[string]string{}
		for k, v := range params {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
		return action, out, nil
	}
	form, _, err := readForm(r)
	if err != nil {
		return "", nil, err
	}
	out := map[string]string{}
	for k := range form {
		out[k] = form.Get(k)
	}
	return form.Get("Action"), out, nil
}

// bodyOf reads a request's body and puts it back.
func bodyOf(r *http.Request) []byte {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	setBody(r, body)
	if err != nil {
		return nil
	}
	return body
}

// queueName is the last element of a queue URL's path.
func queueName(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return queueURL
	}
	return path.Base(u.Path)
}

// sqsError answers in the protocol the request came in.
func sqsError(w http.ResponseWriter, r *http.Request, code, message string) {
	var body string
	if r.Header.Get("X-Amz-Target") != "" {
		b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": message})
		body = string(b)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Query-Error", "AWS.SimpleQueueService."+code+";Sender")
	} else {
		body = fmt.Sprintf(`<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">`+
			`<Error><Type>Sender</Type><Code>AWS.SimpleQueueService.%s</Code><Message>%s</Message><Detail/></Error>`+
			`<RequestId>%s</RequestId></ErrorResponse>`, code, html.EscapeString(message), requestID())
		w.Header().Set("Content-Type", "text/xml")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusBadRequest)
	w.Write([]byte(body))
}
